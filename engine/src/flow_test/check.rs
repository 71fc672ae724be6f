//! What a case expected against what it did: every difference, each at its place in the test
//! file, with a line diff where one helps.

use serde_json::Value;

use super::file::{DescribedReply, ExpectedReply, ExpectedStatus, TestCase, Turn};
use super::run::{Observed, TurnOutcome};
use crate::Engine;
use crate::conversation::{AnswerStatus, ReplyText};
use crate::flow_set::LoadedFlow;
use crate::http::NOT_RECORDED;

/// One way a case differs from what it expects.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where in the test file (a JSON pointer, e.g. `/tests/0/conversation/1/tern`).
    pub at: String,
    /// What differs, in words.
    pub message: String,
    /// Expected and actual, line by line (`-` expected, `+` actual), when a diff helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Every way `observed` differs from what case `index` expects.
pub fn check(case: &TestCase, index: usize, observed: &Observed) -> Vec<Problem> {
    let base = format!("/tests/{index}");
    let mut problems = Vec::new();
    let mut push = |at: String, message: String, diff: Option<String>| problems.push(Problem { at, message, diff });
    for (t, (turn, outcome)) in case.conversation.iter().zip(&observed.turns).enumerate() {
        let at = format!("{base}/conversation/{t}");
        match outcome {
            TurnOutcome::NotAnswered(why) => {
                push(at, format!("the message {:?} got no answer: {why}", turn.contact), None)
            }
            TurnOutcome::Answered { status: AnswerStatus::NoFlow, .. } => push(
                format!("{at}/contact"),
                format!(
                    "no flow started: {:?} matches no flow's trigger and no run was waiting for an answer",
                    turn.contact
                ),
                None,
            ),
            TurnOutcome::Answered { replies, flow, .. } => {
                if let Some(want) = &turn.tern
                    && !replies_match(want, replies)
                {
                    let diff = diff(
                        &want.iter().map(shown_expected).collect::<Vec<_>>(),
                        &replies.iter().map(shown).collect::<Vec<_>>(),
                    );
                    let by = flow.as_ref().map(|f| format!(" (flow `{f}` answered)")).unwrap_or_default();
                    push(format!("{at}/tern"), format!("the replies to {:?} differ{by}", turn.contact), Some(diff));
                }
            }
        }
    }
    let expect = &case.expect;
    let got = observed.status;
    let failure = || match &observed.error {
        Some(e) => {
            let step = e.step.as_ref().map(|s| format!(" at step `{s}`")).unwrap_or_default();
            format!("failed{step} [{}]: {}", e.code, e.message)
        }
        None => "failed".to_string(),
    };
    let wanted = expect.status.or(expect.error.as_ref().map(|_| ExpectedStatus::Failed));
    match (wanted, got) {
        (_, None | Some(AnswerStatus::NoFlow | AnswerStatus::NoPausedRun)) => {}
        (None, Some(AnswerStatus::Failed)) => push(
            format!("{base}/expect"),
            format!(
                "the run {}; the test expects it not to fail (say `\"status\": \"failed\"` if it should)",
                failure()
            ),
            None,
        ),
        (None, Some(_)) => {}
        (Some(want), Some(got)) => {
            let got_word = match got {
                AnswerStatus::Completed => "completed",
                AnswerStatus::Paused => "paused (waiting for the contact)",
                _ => "failed",
            };
            let same = matches!(
                (want, got),
                (ExpectedStatus::Completed, AnswerStatus::Completed)
                    | (ExpectedStatus::Paused, AnswerStatus::Paused)
                    | (ExpectedStatus::Failed, AnswerStatus::Failed)
            );
            if !same {
                let got_word = if got == AnswerStatus::Failed { failure() } else { got_word.to_string() };
                let want_word =
                    serde_json::to_value(want).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                push(
                    format!("{base}/expect/status"),
                    format!("the run {got_word}; the test expects `{want_word}`"),
                    None,
                );
            }
        }
    }
    if let Some(code) = &expect.error
        && got == Some(AnswerStatus::Failed)
        && observed.error.as_ref().is_some_and(|e| &e.code != code)
    {
        push(format!("{base}/expect/error"), format!("the run {}; the test expects error `{code}`", failure()), None);
    }
    for (name, want) in &expect.variables {
        let at = crate::diagnostics::pointer_push(&format!("{base}/expect/variables"), name);
        match observed.variables.get(name) {
            None => push(at, format!("variable `{name}` is not set at the end of the run"), None),
            Some(got) if got != want => {
                push(at, format!("variable `{name}` differs"), Some(diff(&pretty(want), &pretty(got))));
            }
            Some(_) => {}
        }
    }
    for (step, words) in &observed.not_recorded {
        push(format!("{base}/http"), format!("step `{step}` made a call the test has no answer for: {words}"), None);
    }
    for (i, call) in &observed.unused {
        push(format!("{base}/http/{i}"), format!("the recorded answer for {call} was never requested"), None);
    }
    problems
}

fn replies_match(want: &[ExpectedReply], got: &[ReplyText]) -> bool {
    want.len() == got.len() && want.iter().zip(got).all(|(w, g)| reply_matches(w, g))
}

fn reply_matches(want: &ExpectedReply, got: &ReplyText) -> bool {
    match want {
        ExpectedReply::Text(text) => text == &got.text && got.choices.is_empty(),
        ExpectedReply::Described(d) => {
            let text_ok = match (&d.text, &d.contains) {
                (Some(t), _) => t == &got.text,
                (None, Some(part)) => got.text.contains(part.as_str()),
                (None, None) => true,
            };
            let choices_ok =
                d.choices.as_ref().is_none_or(|titles| titles.iter().eq(got.choices.iter().map(|c| &c.title)));
            text_ok && choices_ok
        }
    }
}

/// A reply, as diff lines: the text, then its choices.
fn shown(r: &ReplyText) -> String {
    let mut out = r.text.clone();
    if !r.choices.is_empty() {
        let titles: Vec<&str> = r.choices.iter().map(|c| c.title.as_str()).collect();
        out.push_str(&format!("\n  [choices: {}]", titles.join(" | ")));
    }
    out
}

fn shown_expected(r: &ExpectedReply) -> String {
    match r {
        ExpectedReply::Text(t) => t.clone(),
        ExpectedReply::Described(d) => {
            let mut out = match (&d.text, &d.contains) {
                (Some(t), _) => t.clone(),
                (None, Some(part)) => format!("…{part}…"),
                (None, None) => "…".to_string(),
            };
            if let Some(titles) = &d.choices {
                out.push_str(&format!("\n  [choices: {}]", titles.join(" | ")));
            }
            out
        }
    }
}

fn pretty(v: &Value) -> Vec<String> {
    vec![serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())]
}

/// What a diff shows for an empty list of replies.
const NO_REPLIES: &str = "(no replies)";

/// A line diff of two lists of texts (each may span lines): `-` expected, `+` actual, ` ` both.
fn diff(want: &[String], got: &[String]) -> String {
    let joined = |list: &[String]| if list.is_empty() { format!("{NO_REPLIES}\n") } else { list.join("\n") + "\n" };
    let (want, got) = (joined(want), joined(got));
    let mut out = String::new();
    for change in similar::TextDiff::from_lines(&want, &got).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        out.push(sign);
        out.push(' ');
        out.push_str(change.value().trim_end_matches('\n'));
        out.push('\n');
    }
    out
}

/// `case` with what a recording run saw: each turn's replies, the recorded exchanges, the
/// status the run ended with, and the current values of the variables it names in `expect`.
pub fn recorded(case: &TestCase, observed: &Observed) -> TestCase {
    let mut out = case.clone();
    out.conversation = case
        .conversation
        .iter()
        .zip(&observed.turns)
        .map(|(turn, outcome)| Turn {
            contact: turn.contact.clone(),
            tern: match outcome {
                TurnOutcome::Answered { replies, .. } => Some(replies.iter().map(as_expected).collect()),
                TurnOutcome::NotAnswered(_) => turn.tern.clone(),
            },
        })
        .collect();
    if let Some(recording) = &observed.recorded {
        out.http.clone_from(&recording.exchanges);
    }
    out.expect.status = match observed.status {
        Some(AnswerStatus::Completed) => Some(ExpectedStatus::Completed),
        Some(AnswerStatus::Paused) => Some(ExpectedStatus::Paused),
        Some(AnswerStatus::Failed) => Some(ExpectedStatus::Failed),
        _ => case.expect.status,
    };
    out.expect.error = match (&observed.error, observed.status) {
        (Some(e), Some(AnswerStatus::Failed)) => Some(e.code.clone()),
        _ => None,
    };
    for (name, value) in &mut out.expect.variables {
        if let Some(now) = observed.variables.get(name) {
            value.clone_from(now);
        }
    }
    out
}

/// Error codes of step failures that say a recording run could not reach the API as it should
/// (network, addresses, tokens): what it would record is that failure, not the API's answer.
const NOT_THE_API: &[&str] =
    &["http", "http-denied", "http-timeout", "integration", "token-origin", "rate-limited", NOT_RECORDED];

/// Why what a recording run did (case `index`, run with `engine` against `flows`) should not
/// become the test's expectation: a turn without an answer, a step that failed before reaching
/// the API, a secret the failed flow uses that `engine` does not have, or a variable `expect`
/// names that the run did not set. Empty: the recording may be written.
pub fn record_problems(
    engine: &Engine,
    flows: &[LoadedFlow],
    case: &TestCase,
    index: usize,
    observed: &Observed,
) -> Vec<Problem> {
    let at = format!("/tests/{index}");
    let mut out = Vec::new();
    for (t, o) in observed.turns.iter().enumerate() {
        if let TurnOutcome::NotAnswered(why) = o {
            out.push(Problem {
                at: format!("{at}/conversation/{t}"),
                message: format!("no answer: {why}"),
                diff: None,
            });
        }
    }
    for f in &observed.failures {
        let missing: Vec<&str> = flows
            .iter()
            .filter(|l| f.code == "template" && l.flow.id.as_str() == f.flow)
            .flat_map(|l| l.flow.secrets.iter())
            .filter(|name| engine.secrets.get(name).is_none())
            .map(String::as_str)
            .collect();
        let hint = if !missing.is_empty() {
            format!(
                "set {} for this data directory (`tern secrets set NAME`, or TERN_SECRET_NAME); a recording uses the real secrets, not the test file's",
                missing.join(", ")
            )
        } else if f.code == "http-denied" {
            "an API on this machine or a private network needs --allow-private-network".into()
        } else if NOT_THE_API.contains(&f.code.as_str()) {
            "check the API is reachable from here, then record again".into()
        } else {
            continue;
        };
        out.push(Problem {
            at: format!("{at}/http"),
            message: format!("step `{}` of flow `{}` failed [{}]: {} — {hint}", f.step, f.flow, f.code, f.message),
            diff: None,
        });
    }
    for name in case.expect.variables.keys() {
        if !observed.variables.contains_key(name) {
            out.push(Problem {
                at: crate::diagnostics::pointer_push(&format!("{at}/expect/variables"), name),
                message: format!(
                    "variable `{name}` is not set at the end of the run; remove it from `expect`, or check the flow"
                ),
                diff: None,
            });
        }
    }
    out
}

fn as_expected(r: &ReplyText) -> ExpectedReply {
    if r.choices.is_empty() {
        ExpectedReply::Text(r.text.clone())
    } else {
        ExpectedReply::Described(DescribedReply {
            text: Some(r.text.clone()),
            contains: None,
            choices: Some(r.choices.iter().map(|c| c.title.clone()).collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_marks_what_differs() {
        let d = diff(&["Hello Ada!".into(), "Bye".into()], &["Hello Bob!".into(), "Bye".into()]);
        assert_eq!(d, "- Hello Ada!\n+ Hello Bob!\n  Bye\n");
    }

    #[test]
    fn a_described_reply_matches_its_parts() {
        let got = ReplyText { text: "Pick one".into(), choices: vec![crate::step::Choice::new("A", "a")] };
        let d = |v: serde_json::Value| serde_json::from_value::<ExpectedReply>(v).unwrap();
        assert!(reply_matches(&d(serde_json::json!({"contains": "one", "choices": ["A"]})), &got));
        assert!(!reply_matches(&d(serde_json::json!({"contains": "one", "choices": ["B"]})), &got));
        assert!(!reply_matches(&d(serde_json::json!("Pick one")), &got), "a text alone says there are no choices");
        assert!(reply_matches(&d(serde_json::json!({"text": "Pick one"})), &got));
    }
}
