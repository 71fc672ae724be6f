//! `tern test`: run the flow tests (`*.test.json`) against their recorded API answers, or
//! record those answers from the real APIs (`--record`). The format, the run and the checks
//! are the engine's ([`tern_engine::flow_test`]); this prints them and writes the report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use tern_engine::LoadedFlow;
use tern_engine::flow_set::{FileOutcome, load_files, read_flow};
use tern_engine::flow_test::{self, Mode, Problem, TestFile};
use tern_engine::{Diagnostic, LoadOptions};

use super::Failed;
use super::context::Shared;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files (`NAME.test.json`), or folders searched for them.
    #[arg(value_name = "PATH", default_value = ".")]
    paths: Vec<PathBuf>,
    /// Run the conversations against the real APIs (with the integrations and secrets of this
    /// data directory) and write what happened back into the test files: replies, API
    /// exchanges (secret values masked), integration origins, the status and the values of the
    /// variables `expect` names. Review the change before committing it.
    #[arg(long)]
    record: bool,
    /// Only the tests whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    name: Option<String>,
    /// Also write a JUnit XML report here (for CI).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    #[command(flatten)]
    error_reply: super::ErrorReplyArgs,
}

/// What one test file came to.
struct FileReport {
    path: PathBuf,
    cases: Vec<CaseReport>,
}

struct CaseReport {
    name: String,
    problems: Vec<Problem>,
    elapsed: Duration,
}

pub async fn test(shared: &Shared, args: TestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    for p in &args.paths {
        if !p.exists() {
            return Err(anyhow::anyhow!("{} does not exist", p.display()));
        }
        if p.is_file() && !p.to_string_lossy().ends_with(flow_test::TEST_FILE_SUFFIX) {
            return Err(anyhow::anyhow!(
                "{} is not a flow test: test files are named NAME{} and sit next to the flows they test; to test the flows of a folder, give the folder",
                p.display(),
                flow_test::TEST_FILE_SUFFIX
            ));
        }
    }
    let files = flow_test::test_files(&args.paths)?;
    if files.is_empty() {
        let where_ = args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(anyhow::anyhow!(
            "no test files (`*{}`) in {where_}; write one next to your flows (see the README, \"Flow tests\")",
            flow_test::TEST_FILE_SUFFIX
        ));
    }
    let options = flow_test::CaseOptions { error_reply: args.error_reply.text() };
    let registry = Arc::new(super::registry(shared).await?);
    let mode = if args.record { Mode::Record } else { Mode::Replay };
    // Replaying needs no store: no token is fetched and secrets come from the test file.
    let engine = super::run::engine(shared, args.record && shared.has_store(), registry.clone()).await?;
    let integrations = if args.record { super::known_integrations(shared).await } else { None };
    let opts = LoadOptions {
        integrations: integrations.as_ref(),
        allow_private_network: shared.allow_private_network,
        ..LoadOptions::new(&registry)
    };
    let mut flow_sets: HashMap<PathBuf, Option<Vec<LoadedFlow>>> = HashMap::new();
    let mut reports = Vec::new();
    for path in files {
        let test_file = match read_test_file(&path) {
            Ok(f) => f,
            Err(diags) => {
                super::print_diagnostics(&path, &diags);
                reports.push(FileReport {
                    path: path.clone(),
                    cases: vec![CaseReport {
                        name: "(the test file)".into(),
                        problems: diags
                            .iter()
                            .filter(|d| d.is_error())
                            .map(|d| Problem { at: d.pointer.clone(), message: d.message.clone(), diff: None })
                            .collect(),
                        elapsed: Duration::ZERO,
                    }],
                });
                continue;
            }
        };
        let flows_path = flows_path(&path, &test_file);
        let flows = if flows_path.exists() {
            flow_sets.entry(flows_path.clone()).or_insert_with(|| load_flow_set(&flows_path, &opts)).clone()
        } else {
            None
        };
        let selected = test_file.tests.iter().any(|c| args.name.as_ref().is_none_or(|n| c.name.contains(n.as_str())));
        if selected {
            println!("{}", super::terminal::safe(&path.display().to_string()));
        }
        let mut cases = Vec::new();
        let mut recorded = test_file.clone();
        for (index, case) in test_file.tests.iter().enumerate() {
            if args.name.as_ref().is_some_and(|n| !case.name.contains(n.as_str())) {
                continue;
            }
            let Some(flows) = &flows else {
                let message = if flows_path.exists() {
                    format!(
                        "the flows in {} do not load (their problems are above); run `tern validate {}`",
                        flows_path.display(),
                        flows_path.display()
                    )
                } else {
                    format!(
                        "{} does not exist; `flows` is a flow file or folder, relative to the test file",
                        flows_path.display()
                    )
                };
                let report = CaseReport {
                    name: case.name.clone(),
                    problems: vec![Problem { at: "/flows".into(), message, diff: None }],
                    elapsed: Duration::ZERO,
                };
                print_case(&report);
                cases.push(report);
                continue;
            };
            let observed = flow_test::run_case(&engine, flows, &test_file, index, mode, &options).await;
            let problems = match mode {
                Mode::Replay => flow_test::check(case, index, &observed),
                Mode::Record => {
                    if let Some(recording) = &observed.recorded {
                        for (name, list) in &recording.origins {
                            recorded.integrations.insert(name.clone(), list.clone());
                        }
                        if recording.dropped > 0 {
                            eprintln!(
                                "note: {} API call(s) past the first {} were not recorded",
                                recording.dropped,
                                tern_engine::http::recording::MAX_EXCHANGES
                            );
                        }
                    }
                    if let Some(slot) = recorded.tests.get_mut(index) {
                        *slot = flow_test::recorded(case, &observed);
                    }
                    flow_test::record_problems(&engine, flows, case, index, &observed)
                }
            };
            let report = CaseReport { name: case.name.clone(), problems, elapsed: observed.elapsed };
            print_case(&report);
            cases.push(report);
        }
        if args.record && flows.is_some() {
            if cases.iter().any(|c| !c.problems.is_empty()) {
                println!(
                    "  nothing recorded into {}: fix what is above and record again",
                    super::terminal::safe(&path.display().to_string())
                );
            } else {
                match write_test_file(&path, &recorded) {
                    Ok(()) => println!("  recorded into {}", super::terminal::safe(&path.display().to_string())),
                    Err(e) => cases.push(CaseReport {
                        name: "(the recording)".into(),
                        problems: vec![Problem { at: String::new(), message: format!("{e:#}"), diff: None }],
                        elapsed: Duration::ZERO,
                    }),
                }
            }
        }
        reports.push(FileReport { path, cases });
    }
    let (passed, failed) = reports
        .iter()
        .flat_map(|f| &f.cases)
        .fold((0, 0), |(p, f), c| if c.problems.is_empty() { (p + 1, f) } else { (p, f + 1) });
    println!("{passed} passed, {failed} failed ({:.2} s)", started.elapsed().as_secs_f64());
    if let Some(junit) = &args.junit {
        write_junit(junit, &reports)?;
    }
    if failed > 0 {
        return Err(Failed(format!("{failed} flow test(s) failed")).into());
    }
    if passed == 0 {
        return Err(Failed(match &args.name {
            Some(n) => format!("no test's name contains {n:?}"),
            None => "the test files hold no tests".into(),
        })
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

fn read_test_file(path: &Path) -> Result<TestFile, Vec<Diagnostic>> {
    let text = read_flow(path, flow_test::MAX_TEST_FILE_BYTES).map_err(|e| {
        let cause = match &e {
            tern_engine::flow_set::FlowFileError::Io { cause, .. } => cause.to_string(),
            tern_engine::flow_set::FlowFileError::TooLarge { bytes, limit, .. } => {
                format!("the test file is {bytes} bytes; the limit is {limit}")
            }
            e => e.to_string(),
        };
        vec![Diagnostic::error("unreadable", "", format!("cannot read the test file: {cause}"))]
    })?;
    TestFile::parse(&text)
}

/// The flows a test file tests: its `flows` (relative to it), or its own folder.
fn flows_path(test: &Path, file: &TestFile) -> PathBuf {
    let dir = test.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    match &file.flows {
        Some(p) => dir.join(p),
        None => dir,
    }
}

/// The flows at `path` as a server loads them, or `None` (after printing every problem) when
/// one does not load.
fn load_flow_set(path: &Path, opts: &LoadOptions<'_>) -> Option<Vec<LoadedFlow>> {
    let files = match load_files(&[path.to_path_buf()], opts) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}", super::terminal::safe(&e.to_string()));
            return None;
        }
    };
    let mut flows = Vec::new();
    let mut ok = true;
    for f in files {
        match f.outcome {
            FileOutcome::Loaded { flow, .. } => flows.push(flow),
            FileOutcome::SecondErrorFlow { problem, .. } => {
                super::print_diagnostics(&f.path, &[problem]);
                ok = false;
            }
            FileOutcome::Invalid(diags) => {
                super::print_diagnostics(&f.path, &diags);
                ok = false;
            }
            FileOutcome::Unreadable(e) => {
                eprintln!("{}", super::terminal::safe(&e.to_string()));
                ok = false;
            }
        }
    }
    if flows.is_empty() && ok {
        eprintln!("{}", super::terminal::safe(&format!("{}: no flows here", path.display())));
        ok = false;
    }
    ok.then_some(flows)
}

fn print_case(report: &CaseReport) {
    let ms = report.elapsed.as_secs_f64() * 1000.0;
    if report.problems.is_empty() {
        println!("  ok      {} ({ms:.0} ms)", super::terminal::safe(&report.name));
        return;
    }
    println!("  FAILED  {} ({ms:.0} ms)", super::terminal::safe(&report.name));
    for p in &report.problems {
        println!("          {}: {}", p.at, super::terminal::safe(&p.message));
        if let Some(diff) = &p.diff {
            for line in diff.lines() {
                println!("            {}", super::terminal::safe(line));
            }
        }
    }
}

/// Writes a recorded test file: pretty JSON, at most what `tern test` reads, with the old
/// file's permissions, replaced in one step (a crash leaves the old file; a symbolic link is
/// replaced, its target is not written through).
fn write_test_file(path: &Path, file: &TestFile) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(file)?;
    text.push('\n');
    if text.len() > flow_test::MAX_TEST_FILE_BYTES {
        anyhow::bail!(
            "not recorded: the recording is {} MiB, more than the {} MiB a test file may hold; make the conversation ask the API for less",
            text.len() >> 20,
            flow_test::MAX_TEST_FILE_BYTES >> 20
        );
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file()
            .set_permissions(meta.permissions())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tmp.persist(path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// `text` as a JUnit report may hold it: secret values masked, and only characters XML 1.0
/// allows (`Char`, XML 1.0 §2.2; others become U+FFFD).
fn xml_text(text: &str) -> String {
    let allowed =
        |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    tern_engine::secrets::known::mask(text).chars().map(|c| if allowed(c) { c } else { '\u{FFFD}' }).collect()
}

/// The JUnit XML report: a suite per test file, a case per test, each problem in its failure.
fn write_junit(path: &Path, reports: &[FileReport]) -> anyhow::Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("tern test");
    for file in reports {
        let mut suite = TestSuite::new(xml_text(&file.path.display().to_string()));
        for case in &file.cases {
            let status = if case.problems.is_empty() {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                if let Some(first) = case.problems.first() {
                    s.set_message(xml_text(&format!("{}: {}", first.at, first.message)));
                }
                let text: Vec<String> = case
                    .problems
                    .iter()
                    .map(|p| match &p.diff {
                        Some(d) => format!("{}: {}\n{d}", p.at, p.message),
                        None => format!("{}: {}", p.at, p.message),
                    })
                    .collect();
                s.set_description(xml_text(&text.join("\n")));
                s
            };
            let mut tc = TestCase::new(xml_text(&case.name), status);
            tc.set_classname(xml_text(&file.path.display().to_string()));
            tc.set_time(case.elapsed);
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
    }
    let xml = report.to_string().context("cannot write the JUnit report")?;
    std::fs::write(path, xml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
