//! Loading a flow: parse → validate (every problem at once, no I/O) → compile into the runtime
//! form, in which templates, JSON paths, regexes and jump targets are already resolved.

use std::collections::{BTreeSet, HashMap};

use regex::Regex;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::analysis;
use crate::diagnostics::{Diagnostic, locate, pointer_push};
use crate::flow::{FlowConfig, HEADER_FIELDS, StepHeader, Trigger, TriggerConfig};
use crate::http::{RequestConfig, RequestTemplate};
use crate::ids::{FlowId, IntegrationName, StepId, Target, VarName};
use crate::mapping::{Mapping, MappingConfig, ResponsePath};
use crate::step::{Behavior, Jump, Registry, Step};
use crate::template::{JsonTemplate, RESERVED_ROOTS, Root, Template, VarRef};

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
}

/// A step ready to run.
#[derive(Debug)]
pub struct CompiledStep {
    /// The id.
    pub id: StepId,
    /// The type name (shared: copied into every trace entry).
    pub type_name: std::sync::Arc<str>,
    /// Where to go after the step (`None`: the following step).
    pub next: Option<Jump>,
    /// Where to go when it fails.
    pub on_error: Option<Jump>,
    /// The step.
    pub step: Box<dyn Step>,
    /// Its behaviour.
    pub behavior: Behavior,
}

/// A flow ready to run.
#[derive(Debug)]
pub struct CompiledFlow {
    /// The flow id.
    pub id: FlowId,
    /// The human-readable name.
    pub name: Option<String>,
    /// The trigger, if any.
    pub trigger: Option<Trigger>,
    /// Initial variables.
    pub variables: Map<String, Value>,
    /// The steps, in document order.
    pub steps: Vec<CompiledStep>,
    /// Integrations the flow uses.
    pub integrations: BTreeSet<IntegrationName>,
    /// Integrations whose metadata templates read (`{{integration.NAME.FIELD}}`).
    pub integration_metadata: BTreeSet<IntegrationName>,
    /// Secrets the flow uses.
    pub secrets: BTreeSet<String>,
    /// Warnings found while loading.
    pub warnings: Vec<Diagnostic>,
}

impl CompiledFlow {
    /// The index of a step.
    pub fn step_index(&self, id: &StepId) -> Option<usize> {
        self.steps.iter().position(|s| &s.id == id)
    }
}

/// Facts collected from each step for the whole-flow checks.
#[derive(Default)]
pub(crate) struct Facts {
    pub uses: Vec<(String, VarRef)>,
    pub defines: Vec<(String, VarName)>,
    /// Explicit edges of each step (targets named in its config, `next`, `on_error`).
    pub edges: Vec<Vec<Jump>>,
}

/// The interface a [`crate::StepType`] uses to parse its config and report problems.
pub struct BuildContext<'a> {
    step_id: &'a StepId,
    base: String,
    ids: &'a HashMap<StepId, usize>,
    index: usize,
    integrations: Option<&'a BTreeSet<IntegrationName>>,
    diagnostics: &'a mut Vec<Diagnostic>,
    facts: &'a mut Facts,
    used_integrations: &'a mut BTreeSet<IntegrationName>,
    metadata_integrations: &'a mut BTreeSet<IntegrationName>,
}

impl BuildContext<'_> {
    /// The id of the step being built.
    pub fn step_id(&self) -> &StepId {
        self.step_id
    }

    /// An absolute JSON pointer from one relative to the step (`/url` → `/steps/3/request/url`).
    pub fn pointer(&self, rel: &str) -> String {
        format!("{}{rel}", self.base)
    }

    /// Reports an error at a pointer relative to the step.
    pub fn error(&mut self, code: &'static str, rel: &str, message: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::error(code, self.pointer(rel), message);
        d.hint = hint;
        self.diagnostics.push(d);
    }

    /// Deserializes the step's own fields, reporting every unknown field (with the nearest known
    /// name) and the first other problem.
    pub fn config<T: DeserializeOwned>(&mut self, config: &Value) -> Option<T> {
        let base = self.base.clone();
        deserialize_reporting_with(config, &base, HEADER_FIELDS, self.diagnostics)
    }

    /// Parses a template at `rel` and records the variables it uses.
    pub fn template(&mut self, rel: &str, text: &str) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => {
                for v in t.vars() {
                    self.use_var(rel, v);
                }
                Some(t)
            }
            Err(e) => {
                self.error(
                    "bad-template",
                    rel,
                    e.message,
                    Some("placeholders look like `{{name}}` or `{{message.text}}`".into()),
                );
                None
            }
        }
    }

    /// Parses every string in a JSON value as a template.
    pub fn json_template(&mut self, rel: &str, value: &Value) -> Option<JsonTemplate> {
        match JsonTemplate::parse(value) {
            Ok(t) => {
                for (p, v) in t.vars() {
                    self.use_var(&format!("{rel}{p}"), v);
                }
                Some(t)
            }
            Err((p, e)) => {
                self.error("bad-template", &format!("{rel}{p}"), e.message, None);
                None
            }
        }
    }

    /// Compiles a request at `rel`.
    pub fn request(&mut self, rel: &str, cfg: &RequestConfig) -> Option<RequestTemplate> {
        match RequestTemplate::compile(cfg) {
            Ok(r) => {
                for (p, v) in r.vars() {
                    self.use_var(&format!("{rel}{p}"), v);
                }
                Some(r)
            }
            Err(errors) => {
                for (p, e) in errors {
                    let code = if p == "/url" { "bad-url" } else { "bad-request" };
                    self.error(code, &format!("{rel}{p}"), e, None);
                }
                None
            }
        }
    }

    /// Compiles a response mapping at `rel`.
    pub fn mapping(&mut self, rel: &str, cfg: &MappingConfig) -> Option<Mapping> {
        let (path, default) = cfg.parts();
        let at = match cfg {
            MappingConfig::Path(_) => rel.to_string(),
            MappingConfig::WithDefault(_) => format!("{rel}/path"),
        };
        match ResponsePath::parse(path) {
            Ok(path) => Some(Mapping { path, default: default.cloned() }),
            Err(e) => {
                self.error("bad-json-path", &at, e, Some("write `data.last_name` or `$.data.emails[0].email`".into()));
                None
            }
        }
    }

    /// Compiles a regular expression at `rel` (size-limited).
    pub fn regex(&mut self, rel: &str, pattern: &str) -> Option<Regex> {
        match regex::RegexBuilder::new(pattern).size_limit(1 << 20).build() {
            Ok(r) => Some(r),
            Err(e) => {
                self.error("bad-regex", rel, format!("invalid regular expression: {e}"), None);
                None
            }
        }
    }

    /// Resolves a jump target at `rel`, reporting a dangling one.
    pub fn target(&mut self, rel: &str, target: &Target) -> Option<Jump> {
        let jump = resolve_target(target, self.ids, &self.pointer(rel), self.diagnostics)?;
        self.facts.edges[self.index].push(jump);
        Some(jump)
    }

    /// Records that the step sets `var`.
    pub fn defines(&mut self, rel: &str, var: &VarName) {
        if RESERVED_ROOTS.contains(&var.as_str()) {
            self.error(
                "reserved-variable",
                rel,
                format!("`{var}` is a built-in template root and cannot be a variable"),
                Some("choose another name".into()),
            );
        }
        self.facts.defines.push((self.pointer(rel), var.clone()));
    }

    /// Records that the step uses an integration, checking that it exists.
    pub fn integration(&mut self, rel: &str, name: &IntegrationName) {
        if let Some(known) = self.integrations
            && !known.contains(name)
        {
            let hint = match nearest(name.as_str(), known.iter().map(IntegrationName::as_str)) {
                Some(n) => format!("did you mean `{n}`? Or add it with `tern integrations add {name}`"),
                None => format!("add it with `tern integrations add {name}`"),
            };
            self.error("unknown-integration", rel, format!("integration `{name}` does not exist"), Some(hint));
        }
        self.used_integrations.insert(name.clone());
    }

    /// Records a placeholder used at `rel` (done for you by `template`, `request` etc.).
    pub fn use_var(&mut self, rel: &str, var: &VarRef) {
        if let Root::Integration(name) = &var.root {
            let name = name.clone();
            self.integration(rel, &name);
            self.metadata_integrations.insert(name);
        }
        self.facts.uses.push((self.pointer(rel), var.clone()));
    }
}

fn resolve_target(
    target: &Target,
    ids: &HashMap<StepId, usize>,
    pointer: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Jump> {
    match target {
        Target::End => Some(Jump::End),
        Target::Step(id) => match ids.get(id) {
            Some(i) => Some(Jump::Step(*i)),
            None => {
                let hint = match nearest(id.as_str(), ids.keys().map(StepId::as_str)) {
                    Some(n) => format!("did you mean `{n}`? Targets are step ids or `end`"),
                    None => "targets are step ids or `end`".into(),
                };
                diags.push(
                    Diagnostic::error("dangling-target", pointer, format!("no step has id `{id}`")).with_hint(hint),
                );
                None
            }
        },
    }
}

/// The closest candidate by edit distance, if it is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    candidates
        .map(|c| (strsim::damerau_levenshtein(&word_lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d < word.len().max(1) && *d <= 1.max(word.len().min(c.len()) / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Deserializes `value`, reporting each unknown field (and removing it to look for more) and
/// then the first remaining problem, with pointers under `base`.
///
/// After unknown fields the value is still returned (without them), so that later checks can
/// report more problems; the diagnostics already make the flow fail to load.
pub(crate) fn deserialize_reporting<T: DeserializeOwned>(
    value: &Value,
    base: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    deserialize_reporting_with(value, base, &[], diags)
}

/// Like [`deserialize_reporting`]; `also_known` are fields handled elsewhere at the top level of
/// `value` (a step's common fields), offered as suggestions too.
pub(crate) fn deserialize_reporting_with<T: DeserializeOwned>(
    value: &Value,
    base: &str,
    also_known: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let mut value = value.clone();
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return Some(t),
            Err(err) => {
                let mut tokens = path_tokens(err.path());
                let inner = err.inner().to_string();
                if let Some((field, expected)) = parse_unknown(&inner, "unknown field") {
                    // serde_path_to_error's path may or may not already end in the field.
                    if tokens.last() == Some(&field) {
                        tokens.pop();
                    }
                    let parent: String = tokens.iter().fold(String::new(), |p, t| pointer_push(&p, t));
                    let mut expected = expected;
                    if tokens.is_empty() {
                        expected.extend(also_known.iter().map(|s| s.to_string()));
                    }
                    let hint = match nearest(&field, expected.iter().map(String::as_str)) {
                        Some(n) => format!("did you mean `{n}`? Known fields: {}", expected.join(", ")),
                        None => format!("known fields: {}", expected.join(", ")),
                    };
                    diags.push(
                        Diagnostic::error(
                            "unknown-field",
                            pointer_push(&format!("{base}{parent}"), &field),
                            format!("unknown field `{field}`"),
                        )
                        .with_hint(hint),
                    );
                    if !remove_at(&mut value, &tokens, &field) {
                        return None;
                    }
                    continue;
                }
                let pointer: String = tokens.iter().fold(base.to_string(), |p, t| pointer_push(&p, t));
                let mut d = Diagnostic::error("invalid-value", pointer, inner.clone());
                if let Some((variant, expected)) = parse_unknown(&inner, "unknown variant") {
                    let hint = match nearest(&variant, expected.iter().map(String::as_str)) {
                        Some(n) => format!("did you mean `{n}`? Allowed: {}", expected.join(", ")),
                        None => format!("allowed: {}", expected.join(", ")),
                    };
                    d = d.with_hint(hint);
                }
                if inner.starts_with("missing field") {
                    d.code = "missing-field";
                }
                diags.push(d);
                return None;
            }
        }
    }
    None
}

fn path_tokens(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (and "unknown variant").
fn parse_unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?.trim_start();
    let mut quoted = rest.split('`').skip(1).step_by(2).map(str::to_string);
    let name = quoted.next()?;
    Some((name, quoted.collect()))
}

fn remove_at(value: &mut Value, tokens: &[String], field: &str) -> bool {
    let mut current = value;
    for t in tokens {
        current = match current {
            Value::Object(m) => match m.get_mut(t) {
                Some(v) => v,
                None => return false,
            },
            Value::Array(a) => match t.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    current.as_object_mut().and_then(|m| m.remove(field)).is_some()
}

/// Loads a flow from its JSON text: every problem is reported at once, with line and column.
pub fn load_flow(source: &str, opts: &LoadOptions<'_>) -> Result<CompiledFlow, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let result = load_inner(source, opts, &mut diags);
    locate(source, &mut diags);
    diags.sort_by_key(|d| (d.line, d.column, d.severity));
    match result {
        Some(mut flow) if !diags.iter().any(Diagnostic::is_error) => {
            flow.warnings = diags;
            Ok(flow)
        }
        _ => Err(diags),
    }
}

fn load_inner(source: &str, opts: &LoadOptions<'_>, diags: &mut Vec<Diagnostic>) -> Option<CompiledFlow> {
    if source.len() > opts.limits.max_bytes {
        diags.push(Diagnostic::error(
            "too-large",
            "",
            format!("the flow is {} bytes; the limit is {}", source.len(), opts.limits.max_bytes),
        ));
        return None;
    }
    let doc: Value = match serde_json::from_str(source) {
        Ok(v) => v,
        Err(e) => {
            let mut d = Diagnostic::error("syntax", "", format!("not valid JSON: {e}"))
                .with_hint("check for a missing comma or quote near this position");
            d.line = Some(e.line());
            d.column = Some(e.column());
            diags.push(d);
            return None;
        }
    };
    if !doc.is_object() {
        diags.push(Diagnostic::error(
            "invalid-value",
            "",
            "a flow must be a JSON object with `version`, `id` and `steps`",
        ));
        return None;
    }
    let cfg: Option<FlowConfig> = deserialize_reporting(&doc, "", diags);
    // Even when the top level is broken, look at the steps to report their problems too.
    let raw_steps: Vec<Value> = match &cfg {
        Some(c) => c.steps.clone(),
        None => doc.get("steps").and_then(Value::as_array).cloned().unwrap_or_default(),
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
    }
    if raw_steps.len() > opts.limits.max_steps {
        diags.push(Diagnostic::error(
            "too-many-steps",
            "/steps",
            format!("{} steps; the limit is {}", raw_steps.len(), opts.limits.max_steps),
        ));
        return None;
    }

    // Pass 1: headers and ids.
    let mut headers: Vec<Option<(StepHeader, Value)>> = Vec::new();
    let mut ids: HashMap<StepId, usize> = HashMap::new();
    for (i, raw) in raw_steps.iter().enumerate() {
        let base = format!("/steps/{i}");
        let Some(obj) = raw.as_object() else {
            diags.push(Diagnostic::error("invalid-value", base, "a step must be a JSON object with `id` and `type`"));
            headers.push(None);
            continue;
        };
        let (head, rest): (Map<String, Value>, Map<String, Value>) =
            obj.clone().into_iter().partition(|(k, _)| HEADER_FIELDS.contains(&k.as_str()));
        let header: Option<StepHeader> = deserialize_reporting(&Value::Object(head), &base, diags);
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
        }
        headers.push(header.map(|h| (h, Value::Object(rest))));
    }

    // Pass 2: build each step.
    let mut facts = Facts { edges: vec![Vec::new(); raw_steps.len()], ..Facts::default() };
    let mut used_integrations = BTreeSet::new();
    let mut metadata_integrations = BTreeSet::new();
    let mut steps = Vec::new();
    let mut all_built = true;
    for (i, entry) in headers.iter().enumerate() {
        let base = format!("/steps/{i}");
        let Some((header, config)) = entry else {
            all_built = false;
            continue;
        };
        let next = header.next.as_ref().and_then(|t| resolve_target(t, &ids, &format!("{base}/next"), diags));
        let on_error =
            header.on_error.as_ref().and_then(|t| resolve_target(t, &ids, &format!("{base}/on_error"), diags));
        facts.edges[i].extend(next.iter().chain(on_error.iter()).copied());
        let Some(step_type) = opts.registry.get(&header.kind) else {
            let names = opts.registry.names();
            let hint = match nearest(&header.kind, names.iter().copied()) {
                Some(n) => format!("did you mean `{n}`? Known step types: {}", names.join(", ")),
                None => format!("known step types: {}", names.join(", ")),
            };
            diags.push(
                Diagnostic::error(
                    "unknown-step-type",
                    format!("{base}/type"),
                    format!("unknown step type `{}`", header.kind),
                )
                .with_hint(hint),
            );
            all_built = false;
            continue;
        };
        let mut cx = BuildContext {
            step_id: &header.id,
            base: base.clone(),
            ids: &ids,
            index: i,
            integrations: opts.integrations,
            diagnostics: diags,
            facts: &mut facts,
            used_integrations: &mut used_integrations,
            metadata_integrations: &mut metadata_integrations,
        };
        match step_type.build(config, &mut cx) {
            Some(step) => {
                let behavior = step.behavior();
                steps.push(CompiledStep {
                    id: header.id.clone(),
                    type_name: header.kind.as_str().into(),
                    next,
                    on_error,
                    step,
                    behavior,
                });
            }
            None => all_built = false,
        }
    }

    let cfg = cfg?;
    let trigger = compile_trigger(cfg.trigger.as_ref(), opts.integrations, diags);
    let initial: BTreeSet<&str> = cfg.variables.keys().map(VarName::as_str).collect();
    let secrets = analysis::check_variables(&facts, &initial, diags);
    if all_built && steps.len() == raw_steps.len() {
        analysis::check_graph(&steps, &facts, diags);
    }
    if !all_built {
        return None;
    }
    Some(CompiledFlow {
        id: cfg.id,
        name: cfg.name,
        trigger,
        variables: cfg.variables.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect(),
        steps,
        integrations: used_integrations,
        integration_metadata: metadata_integrations,
        secrets,
        warnings: Vec::new(),
    })
}

fn compile_trigger(
    cfg: Option<&TriggerConfig>,
    integrations: Option<&BTreeSet<IntegrationName>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Trigger> {
    let (matcher, priority) = match cfg? {
        TriggerConfig::Message { matcher, priority } => (matcher, priority),
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
    let matcher = matcher.clone().unwrap_or_default();
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
