//! Loading a flow: parse → validate (every problem at once, no I/O) → compile into the runtime
//! form ([`CompiledFlow`]), in which templates, JSON paths, regexes and jump targets are
//! already resolved.
//!
//! Loading is a fixed list of named passes ([`PASSES`]) over one [`Load`] state. Each pass adds
//! what it finds to the state and its problems to the diagnostics; a pass stops the load only
//! when nothing after it could say anything useful (the text is not JSON, too large, too many
//! steps). Otherwise every pass runs, so a flow designer sees every problem at once: the steps
//! of a flow whose top level is broken are still built and checked. Steps are built through
//! the step API ([`crate::step`]); the whole-flow checks are in `analysis.rs`.

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

use serde_json::{Map, Value};

use crate::analysis;
use crate::checked::parse_checked;
use crate::diagnostics::{Diagnostic, locate, nearest, pointer_push};
use crate::duplicates;
use crate::flow::{ERROR_VARIABLE, FlowConfig, HEADER_FIELDS, StepHeader, Trigger, TriggerConfig};
use crate::ids::{IntegrationName, StepId, VarName};
use crate::shape::ShapeReport;
use crate::step::{BuildContext, CompiledFlow, CompiledStep, Facts, Jump, Registry, resolve_target};
use crate::template::RESERVED_ROOTS;

/// Limits on flow documents (SECURITY R9).
#[derive(Clone, Debug)]
pub struct FlowLimits {
    /// Largest flow file.
    pub max_bytes: usize,
    /// Most steps in one flow.
    pub max_steps: usize,
}

impl Default for FlowLimits {
    fn default() -> Self {
        Self { max_bytes: 1024 * 1024, max_steps: 1000 }
    }
}

/// What loading needs besides the text.
#[derive(Clone, Debug)]
pub struct LoadOptions<'a> {
    /// The step types flows may use.
    pub registry: &'a Registry,
    /// The integrations that exist, when known; `None` skips the check (`tern validate`
    /// without a store).
    pub integrations: Option<&'a BTreeSet<IntegrationName>>,
    /// Size limits.
    pub limits: FlowLimits,
    /// Whether the flows will run with `--allow-private-network`; without it, a request whose
    /// URL has a literal private or loopback host (`http://127.0.0.1:9000/…`, `localhost`) is
    /// warned about (`private-address`): the guard refuses it at run time.
    pub allow_private_network: bool,
}

impl<'a> LoadOptions<'a> {
    /// Loading with `registry` alone: integrations not checked, default limits, private hosts
    /// warned about. Other settings by struct update: `LoadOptions { integrations, ..LoadOptions::new(r) }`.
    pub fn new(registry: &'a Registry) -> Self {
        Self { registry, integrations: None, limits: FlowLimits::default(), allow_private_network: false }
    }
}

/// Variables a step of an unknown type (or one that checks its own config) probably defines:
/// `save_as`, `*_as` and the keys of `variables`, so later steps get no false errors.
fn guess_defines(config: &Value) -> Vec<(String, VarName)> {
    let mut out = Vec::new();
    let Some(map) = config.as_object() else { return out };
    for (key, value) in map {
        if key.ends_with("_as")
            && let Some(v) = value.as_str().and_then(|s| VarName::new(s).ok())
        {
            out.push((pointer_push("", key), v));
        }
    }
    if let Some(vars) = map.get("variables").and_then(Value::as_object) {
        out.extend(vars.keys().filter_map(|k| Some((pointer_push("/variables", k), VarName::new(k.as_str()).ok()?))));
    }
    out
}

/// Loads a flow from its JSON text: every problem is reported at once, with line and column.
pub fn load_flow(source: &str, opts: &LoadOptions<'_>) -> Result<CompiledFlow, Vec<Diagnostic>> {
    load_flow_and_calls(source, opts).0
}

/// [`load_flow`], and the calls to other flows its steps make even when the flow does not
/// load (a loaded flow has them in [`CompiledFlow::calls`]): the checks across a set of flows
/// report a broken flow's call problems with its other problems.
pub fn load_flow_and_calls(
    source: &str,
    opts: &LoadOptions<'_>,
) -> (Result<CompiledFlow, Vec<Diagnostic>>, Vec<crate::step::FlowCall>) {
    // A flow file saved with a byte order mark reads like one without (crate::json).
    let source = crate::json::without_bom_str(source);
    let mut load = Load::new(source, opts);
    let stopped = PASSES.iter().find(|(_, pass)| pass(&mut load).is_break());
    if let Some((name, _)) = stopped {
        tracing::debug!(pass = name, "loading the flow stopped");
    }
    let stopped = stopped.is_some();
    let result = if stopped { None } else { load.assemble() };
    // What `assemble` did not take: the calls of a flow that does not load.
    let calls = std::mem::take(&mut load.facts.calls);
    let mut diags = load.diags;
    locate(source, &mut diags);
    diags.sort_by_key(|d| (d.line, d.column, d.severity));
    match result {
        Some(mut flow) if !diags.iter().any(Diagnostic::is_error) => {
            flow.warnings = diags;
            let calls = flow.calls.clone();
            (Ok(flow), calls)
        }
        Some(flow) => (Err(diags), flow.calls),
        None => (Err(diags), calls),
    }
}

/// A loading pass: adds what it finds to the state; `Break` when the load cannot go on.
type Pass = fn(&mut Load<'_>) -> ControlFlow<()>;

/// The passes, in order. Each is named for what it reads or checks.
const PASSES: &[(&str, Pass)] = &[
    ("size", check_size),
    ("json", parse_json),
    ("top level", read_top_level),
    ("step count", check_step_count),
    ("step headers", read_step_headers),
    ("steps", build_steps),
    ("flow on_error", resolve_flow_on_error),
    ("trigger", read_trigger),
    ("variables", check_variables),
    ("interface", check_interface),
    ("loop bodies", find_loop_bodies),
    ("graph", check_graph),
    ("private hosts", check_private_hosts),
];

/// A step's common fields (`None` when they are broken), its type name and its own fields.
struct RawStep {
    header: Option<StepHeader>,
    kind: String,
    config: Value,
}

/// What the passes found so far.
struct Load<'a> {
    source: &'a str,
    opts: &'a LoadOptions<'a>,
    diags: Vec<Diagnostic>,
    /// The document (after `json`).
    doc: Value,
    /// The top level, when it is usable (after `top level`) …
    cfg: Option<FlowConfig>,
    /// … and what checking it found (defines and targets even when it is not usable).
    top: ShapeReport,
    /// The steps as written (from `cfg`, or from the document when the top level is broken).
    raw_steps: Vec<Value>,
    /// Variables set before the first step (declared, or `error` in an error flow).
    initial: BTreeSet<String>,
    /// Each step's parts, `None` for a step that is not an object (after `step headers`).
    headers: Vec<Option<RawStep>>,
    /// Step ids to their index.
    ids: HashMap<StepId, usize>,
    /// What building the steps recorded.
    facts: Facts,
    /// The steps built (after `steps`).
    steps: Vec<CompiledStep>,
    /// Whether every step was built.
    all_built: bool,
    /// The flow-level `on_error`.
    on_error: Option<Jump>,
    /// The compiled trigger.
    trigger: Option<Trigger>,
    /// The secrets the flow uses (after `variables`).
    secrets: BTreeSet<String>,
}

impl<'a> Load<'a> {
    fn new(source: &'a str, opts: &'a LoadOptions<'a>) -> Self {
        Self {
            source,
            opts,
            diags: Vec::new(),
            doc: Value::Null,
            cfg: None,
            top: ShapeReport::default(),
            raw_steps: Vec::new(),
            initial: BTreeSet::new(),
            headers: Vec::new(),
            ids: HashMap::new(),
            facts: Facts::default(),
            steps: Vec::new(),
            all_built: true,
            on_error: None,
            trigger: None,
            secrets: BTreeSet::new(),
        }
    }

    /// The compiled flow, when the top level is usable and every step was built.
    fn assemble(&mut self) -> Option<CompiledFlow> {
        let cfg = self.cfg.take()?;
        if !self.all_built {
            return None;
        }
        Some(CompiledFlow {
            id: cfg.id,
            name: cfg.name,
            description: cfg.description,
            trigger: self.trigger.take(),
            variables: cfg.variables.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect(),
            steps: std::mem::take(&mut self.steps),
            on_error: self.on_error,
            integrations: std::mem::take(&mut self.facts.integrations),
            integration_metadata: std::mem::take(&mut self.facts.integration_metadata),
            secrets: std::mem::take(&mut self.secrets),
            inputs: cfg.inputs.into_iter().collect(),
            outputs: cfg.outputs.into_iter().collect(),
            calls: std::mem::take(&mut self.facts.calls),
            warnings: Vec::new(),
        })
    }
}

/// The text is not larger than [`FlowLimits::max_bytes`].
fn check_size(load: &mut Load<'_>) -> ControlFlow<()> {
    let limit = load.opts.limits.max_bytes;
    if load.source.len() > limit {
        let message = format!("the flow is {} bytes; the limit is {limit}", load.source.len());
        load.diags.push(Diagnostic::error("too-large", "", message));
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// The text is a JSON object; repeated keys are reported.
fn parse_json(load: &mut Load<'_>) -> ControlFlow<()> {
    match duplicates::parse(load.source) {
        Ok((v, repeated)) => {
            if !repeated.is_empty() {
                load.diags.extend(duplicates::diagnostics(load.source, &repeated));
            }
            load.doc = v;
        }
        Err(e) => {
            let mut d = Diagnostic::error("syntax", "", format!("not valid JSON: {e}"))
                .with_hint("check for a missing comma or quote near this position");
            d.line = Some(e.line());
            d.column = Some(e.column());
            load.diags.push(d);
            return ControlFlow::Break(());
        }
    }
    if !load.doc.is_object() {
        load.diags.push(Diagnostic::error(
            "invalid-value",
            "",
            "a flow must be a JSON object with `version`, `id` and `steps`",
        ));
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// The top level: `version`, `steps`, `variables`, and the variables set before the first
/// step. Even when the top level is broken, the steps and variables are taken from the
/// document, to report their problems too (and not report variables as undefined because the
/// top level is broken).
fn read_top_level(load: &mut Load<'_>) -> ControlFlow<()> {
    let (cfg, top) = parse_checked::<FlowConfig>(&load.doc, "", &[], &mut load.diags);
    let diags = &mut load.diags;
    load.raw_steps = match &cfg {
        Some(c) => c.steps.clone(),
        None => load.doc.get("steps").and_then(Value::as_array).cloned().unwrap_or_default(),
    };
    load.initial = match &cfg {
        Some(c) => c.variables.keys().chain(&c.inputs).map(|k| k.as_str().to_string()).collect(),
        None => top
            .defines
            .iter()
            .filter(|(p, _)| p.starts_with("/variables/"))
            .map(|(_, v)| v.as_str().to_string())
            .collect(),
    };
    if let Some(c) = &cfg {
        if c.version != 1 {
            diags.push(
                Diagnostic::error(
                    "unsupported-version",
                    "/version",
                    format!("flow format version {} is not supported", c.version),
                )
                .with_hint("this Tern reads version 1"),
            );
        }
        if c.steps.is_empty() {
            diags.push(Diagnostic::error("no-steps", "/steps", "the flow has no steps"));
        }
        for name in c.variables.keys() {
            if RESERVED_ROOTS.contains(&name.as_str()) {
                diags.push(Diagnostic::error(
                    "reserved-variable",
                    pointer_push("/variables", name.as_str()),
                    format!("`{name}` is a built-in template root and cannot be a variable"),
                ));
            }
        }
        if matches!(c.trigger, Some(TriggerConfig::Error {})) {
            load.initial.insert(ERROR_VARIABLE.to_string());
        }
    } else if load.doc.pointer("/trigger/type").and_then(Value::as_str) == Some("error") {
        load.initial.insert(ERROR_VARIABLE.to_string());
    }
    load.cfg = cfg;
    load.top = top;
    ControlFlow::Continue(())
}

/// At most [`FlowLimits::max_steps`] steps.
fn check_step_count(load: &mut Load<'_>) -> ControlFlow<()> {
    let limit = load.opts.limits.max_steps;
    if load.raw_steps.len() > limit {
        let message = format!("{} steps; the limit is {limit}", load.raw_steps.len());
        load.diags.push(Diagnostic::error("too-many-steps", "/steps", message));
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// Each step's common fields and id (unique, not `end`); targets named in broken headers are
/// still checked.
fn read_step_headers(load: &mut Load<'_>) -> ControlFlow<()> {
    let diags = &mut load.diags;
    let ids = &mut load.ids;
    let mut header_targets = Vec::new();
    for (i, raw) in load.raw_steps.iter().enumerate() {
        let base = format!("/steps/{i}");
        let Some(obj) = raw.as_object() else {
            diags.push(Diagnostic::error("invalid-value", base, "a step must be a JSON object with `id` and `type`"));
            load.headers.push(None);
            continue;
        };
        let (head, rest): (Map<String, Value>, Map<String, Value>) =
            obj.clone().into_iter().partition(|(k, _)| HEADER_FIELDS.contains(&k.as_str()));
        let kind = head.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        let (header, report): (Option<StepHeader>, _) = parse_checked(&Value::Object(head), &base, &[], diags);
        if let Some(h) = &header {
            if h.id.as_str() == "end" {
                diags.push(
                    Diagnostic::error("reserved-id", format!("{base}/id"), "`end` is reserved for ending the run")
                        .with_hint("choose another id"),
                );
            } else if let Some(first) = ids.get(&h.id) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-id",
                        format!("{base}/id"),
                        format!("step id `{}` is already used by /steps/{first}", h.id),
                    )
                    .with_hint("step ids must be unique in a flow"),
                );
            } else {
                ids.insert(h.id.clone(), i);
            }
        } else {
            header_targets.extend(report.targets);
        }
        load.headers.push(Some(RawStep { header, kind, config: Value::Object(rest) }));
    }
    for (pointer, target) in &header_targets {
        resolve_target(target, ids, pointer, diags);
    }
    ControlFlow::Continue(())
}

/// Builds each step through its type in the registry. A step whose header is broken is still
/// built (under a placeholder id) to report the problems of its own fields; for a step that
/// cannot be built, what it probably defines is guessed so later steps get no false errors.
fn build_steps(load: &mut Load<'_>) -> ControlFlow<()> {
    load.facts = Facts::for_steps(load.raw_steps.len());
    let Ok(placeholder_id) = StepId::new("_") else { return ControlFlow::Break(()) };
    let (diags, facts, ids) = (&mut load.diags, &mut load.facts, &load.ids);
    for (i, entry) in load.headers.iter().enumerate() {
        let base = format!("/steps/{i}");
        let Some(RawStep { header, kind, config }) = entry else {
            load.all_built = false;
            continue;
        };
        let (next, on_error) = match header {
            Some(h) => {
                let next = h.next.as_ref().and_then(|t| resolve_target(t, ids, &format!("{base}/next"), diags));
                let on_error =
                    h.on_error.as_ref().and_then(|t| resolve_target(t, ids, &format!("{base}/on_error"), diags));
                facts.edges[i].extend(next.iter().chain(on_error.iter()).copied());
                (next, on_error)
            }
            None => (None, None),
        };
        let Some(step_type) = load.opts.registry.get(kind) else {
            if header.is_some() {
                diags.push(unknown_step_type(load.opts.registry, kind, &base));
            }
            facts.defines.extend(guess_defines(config).into_iter().map(|(p, v)| (format!("{base}{p}"), v)));
            load.all_built = false;
            continue;
        };
        let step_id = header.as_ref().map_or(&placeholder_id, |h| &h.id);
        let mut cx = BuildContext::new(step_id, i, ids, load.opts.integrations, diags, facts);
        let built = step_type.build(config, &mut cx);
        let config_checked = cx.config_checked();
        match (built, header) {
            (Some(step), Some(header)) => {
                let behavior = step.behavior();
                load.steps.push(CompiledStep {
                    id: header.id.clone(),
                    type_name: header.kind.as_str().into(),
                    next,
                    on_error,
                    jumps: std::mem::take(&mut facts.jumps[i]),
                    description: header.description.clone(),
                    summary: crate::graph::step_summary(config),
                    step,
                    behavior,
                    loops: Vec::new(),
                    caught_by: None,
                });
            }
            (built, _) => {
                if built.is_none() && !config_checked {
                    facts.defines.extend(guess_defines(config).into_iter().map(|(p, v)| (format!("{base}{p}"), v)));
                }
                load.all_built = false;
            }
        }
    }
    ControlFlow::Continue(())
}

/// `unknown-step-type` at `base`, with the nearest registered name.
fn unknown_step_type(registry: &Registry, kind: &str, base: &str) -> Diagnostic {
    let names = registry.names();
    let hint = match nearest(kind, names.iter().copied()) {
        Some(n) => format!("did you mean `{n}`? Known step types: {}", names.join(", ")),
        // A namespaced name is a plugin's (`acme.lookup-contact`): say how plugins get here.
        None if kind.contains('.') => format!(
            "`{kind}` would be a plugin's step type, and no loaded plugin defines it: install the plugin (`tern plugins install FILE.wasm`; `tern plugins list` shows what is installed). A `tern serve` started before the plugin was installed does not have it until it is restarted. Known step types: {}",
            names.join(", ")
        ),
        None => format!("known step types: {}", names.join(", ")),
    };
    Diagnostic::error("unknown-step-type", format!("{base}/type"), format!("unknown step type `{kind}`"))
        .with_hint(hint)
}

/// The flow-level `on_error` (checked even when the top level is broken).
fn resolve_flow_on_error(load: &mut Load<'_>) -> ControlFlow<()> {
    let (ids, diags) = (&load.ids, &mut load.diags);
    match &load.cfg {
        Some(c) => load.on_error = c.on_error.as_ref().and_then(|t| resolve_target(t, ids, "/on_error", diags)),
        None => {
            for (pointer, target) in load.top.targets.iter().filter(|(p, _)| p == "/on_error") {
                resolve_target(target, ids, pointer, diags);
            }
        }
    }
    ControlFlow::Continue(())
}

/// The trigger, compiled.
fn read_trigger(load: &mut Load<'_>) -> ControlFlow<()> {
    let (opts, diags) = (load.opts, &mut load.diags);
    let matches_everything = says_nothing(&load.doc);
    load.trigger = load
        .cfg
        .as_ref()
        .and_then(|c| compile_trigger(c.trigger.as_ref(), matches_everything, opts.integrations, diags));
    ControlFlow::Continue(())
}

/// Undefined variables and misspelled fields of built-in roots; collects the secrets used.
fn check_variables(load: &mut Load<'_>) -> ControlFlow<()> {
    let initial: BTreeSet<&str> = load.initial.iter().map(String::as_str).collect();
    load.secrets = analysis::check_variables(&load.facts, &initial, &mut load.diags);
    ControlFlow::Continue(())
}

/// The flow's interface for callers: every declared output is a variable the flow has (an
/// initial variable, an input, or one a step sets), each name declared once.
fn check_interface(load: &mut Load<'_>) -> ControlFlow<()> {
    let Some(cfg) = &load.cfg else { return ControlFlow::Continue(()) };
    let defined: BTreeSet<&str> =
        load.initial.iter().map(String::as_str).chain(load.facts.defines.iter().map(|(_, v)| v.as_str())).collect();
    for (field, names) in [("inputs", &cfg.inputs), ("outputs", &cfg.outputs)] {
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                load.diags.push(Diagnostic::error(
                    "duplicate-name",
                    format!("/{field}/{i}"),
                    format!("`{name}` is already in `{field}`"),
                ));
            } else if RESERVED_ROOTS.contains(&name.as_str()) {
                load.diags.push(Diagnostic::error(
                    "reserved-variable",
                    format!("/{field}/{i}"),
                    format!("`{name}` is a built-in template root and cannot be a variable"),
                ));
            }
        }
    }
    for (i, name) in cfg.outputs.iter().enumerate() {
        if !defined.contains(name.as_str()) {
            let mut d = Diagnostic::error(
                "undefined-output",
                format!("/outputs/{i}"),
                format!(
                    "output `{name}` is never set in this flow: no step sets it, and it is not a variable or input"
                ),
            );
            if let Some(near) = crate::diagnostics::nearest(name.as_str(), defined.iter().copied()) {
                d = d.with_hint(format!("did you mean `{near}`?"));
            }
            load.diags.push(d);
        }
    }
    ControlFlow::Continue(())
}

/// The bodies of repeating steps (`for_each`), when every step was built.
fn find_loop_bodies(load: &mut Load<'_>) -> ControlFlow<()> {
    if load.all_built && load.steps.len() == load.raw_steps.len() {
        analysis::loop_bodies(&mut load.steps, &load.facts, &mut load.diags);
    }
    ControlFlow::Continue(())
}

/// Unreachable steps and loops without a pause, when every step was built.
fn check_graph(load: &mut Load<'_>) -> ControlFlow<()> {
    if load.all_built && load.steps.len() == load.raw_steps.len() {
        let roots: Vec<usize> = load
            .on_error
            .iter()
            .filter_map(|j| match j {
                Jump::Step(i) => Some(*i),
                Jump::End => None,
            })
            .collect();
        analysis::check_graph(&load.steps, &load.facts, &roots, &mut load.diags);
    }
    ControlFlow::Continue(())
}

/// Requests to a literal private or loopback host (`http://127.0.0.1:9000`, `localhost`): the
/// outbound guard refuses them unless private networks are allowed, so `tern validate` says so
/// now (a warning: with `--allow-private-network` they work). Host names are not looked up.
fn check_private_hosts(load: &mut Load<'_>) -> ControlFlow<()> {
    let allow = load.opts.allow_private_network;
    for (pointer, origin) in &load.facts.literal_origins {
        if let Some(why) = crate::http::guard::static_refusal(origin, allow) {
            let why = why.split(';').next().unwrap_or(&why).trim();
            // Unspecified, multicast and broadcast addresses stay refused with the flag too.
            let unreachable = allow || crate::http::guard::static_refusal(origin, true).is_some();
            let (message, hint) = if unreachable {
                (format!("{why}: no request can reach it"), "use the API's real host")
            } else {
                (
                    format!("{why}: Tern refuses to call it unless private networks are allowed"),
                    "for an API on this machine or your network, run with --allow-private-network (or TERN_ALLOW_PRIVATE_NETWORK=1); never in production",
                )
            };
            load.diags.push(Diagnostic::warning("private-address", pointer.clone(), message).with_hint(hint));
        }
    }
    ControlFlow::Continue(())
}

/// Whether the flow writes a `match` that says nothing: an object with no other fields than
/// `regex` (absent or null) and `keywords` (absent or empty). Read from the document, so that
/// a `match` whose fields were dropped for their problems is not warned about as well.
fn says_nothing(doc: &Value) -> bool {
    doc.pointer("/trigger/match").and_then(Value::as_object).is_some_and(|m| {
        m.keys().all(|k| k == "regex" || k == "keywords")
            && m.get("regex").is_none_or(Value::is_null)
            && m.get("keywords").is_none_or(|k| k.as_array().is_some_and(Vec::is_empty))
    })
}

/// The trigger; `matches_everything` is [`says_nothing`] of the document.
fn compile_trigger(
    cfg: Option<&TriggerConfig>,
    matches_everything: bool,
    integrations: Option<&BTreeSet<IntegrationName>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Trigger> {
    let (matcher, priority) = match cfg? {
        TriggerConfig::Message { matcher, priority } => (matcher, priority),
        TriggerConfig::Error {} => return Some(Trigger::Error),
        TriggerConfig::IntegrationEvent { integration, priority } => {
            if let Some(known) = integrations
                && !known.contains(integration)
            {
                diags.push(
                    Diagnostic::error(
                        "unknown-integration",
                        "/trigger/integration",
                        format!("integration `{integration}` does not exist"),
                    )
                    .with_hint(format!("add it with `tern integrations add {integration}`")),
                );
            }
            return Some(Trigger::IntegrationEvent { integration: integration.clone(), priority: *priority });
        }
    };
    if matches_everything {
        diags.push(
            Diagnostic::warning(
                "matches-everything",
                "/trigger/match",
                "`match` has no keywords and no regex, so every message starts this flow",
            )
            .with_hint("add keywords (`\"keywords\": [\"order\"]`) or a `regex`; leave `match` out when every message is meant"),
        );
    }
    let matcher = matcher.clone().unwrap_or_default();
    for (i, keyword) in matcher.keywords.iter().enumerate() {
        if !keyword.chars().any(char::is_alphanumeric) {
            diags.push(
                Diagnostic::error(
                    "empty-keyword",
                    format!("/trigger/match/keywords/{i}"),
                    format!("the keyword {keyword:?} has no letters or digits, so it never matches"),
                )
                .with_hint("keywords match whole words; use `match.regex` to match punctuation"),
            );
        }
    }
    let regex = match &matcher.regex {
        Some(p) => match regex::RegexBuilder::new(p).size_limit(1 << 20).build() {
            Ok(r) => Some(r),
            Err(e) => {
                diags.push(Diagnostic::error(
                    "bad-regex",
                    "/trigger/match/regex",
                    format!("invalid regular expression: {e}"),
                ));
                None
            }
        },
        None => None,
    };
    Some(Trigger::Message {
        regex,
        keywords: matcher.keywords.iter().map(|k| k.to_lowercase()).collect(),
        priority: *priority,
    })
}
