//! Loading a flow: parse → validate (every problem at once, no I/O) → compile into the runtime
//! form, in which templates, JSON paths, regexes and jump targets are already resolved.

use std::collections::{BTreeSet, HashMap};

use regex::Regex;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::analysis;
use crate::diagnostics::{Diagnostic, locate, pointer_push};
use crate::duplicates;
use crate::flow::{FlowConfig, HEADER_FIELDS, StepHeader, Trigger, TriggerConfig};
use crate::http::{RequestConfig, RequestTemplate};
use crate::ids::{FlowId, IntegrationName, StepId, Target, VarName};
use crate::mapping::{Mapping, MappingConfig, ResponsePath};
use crate::shape::{self, ShapeReport};
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
    /// The other places the step may jump to, named in its own fields (branch cases, plugin
    /// outcomes), as the step type declared them through [`BuildContext::target`].
    pub jumps: Vec<StepJump>,
    /// The step's `description`, a note for people reading the flow.
    pub description: Option<String>,
    /// The step.
    pub step: Box<dyn Step>,
    /// Its behaviour.
    pub behavior: Behavior,
}

/// A place a step may jump to, declared in its own fields (not `next` or `on_error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepJump {
    /// The target's JSON pointer, relative to the step (`/cases/0/next`).
    pub pointer: String,
    /// A short text for people (`qty gte 100`), when the step type gave one
    /// ([`BuildContext::labeled_target`]).
    pub label: Option<String>,
    /// Where.
    pub jump: Jump,
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
    /// The flow-level fallback: where a failing step without its own `on_error` goes (taken at
    /// most once per activation, so a failing fallback cannot loop).
    pub on_error: Option<Jump>,
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
    /// The targets each step declared through [`BuildContext::target`], for pictures of the flow.
    pub jumps: Vec<Vec<StepJump>>,
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
    config_checked: bool,
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

    /// Checks the step's own fields against the JSON Schema of `T` and deserializes them. Every
    /// problem is reported at once, in the flow's vocabulary (unknown fields with the nearest
    /// known name, missing fields, wrong types at any depth); optional fields with problems are
    /// dropped so the step can still be built and checked further.
    ///
    /// When the fields cannot be used, what they define (`VarName` fields, keys of variable maps)
    /// and the targets they name are still recorded, so later steps get no false
    /// `undefined-variable` errors and a misspelled target is reported.
    pub fn config<T: DeserializeOwned + JsonSchema>(&mut self, config: &Value) -> Option<T> {
        let base = self.base.clone();
        let (parsed, report) = parse_checked::<T>(config, &base, HEADER_FIELDS, self.diagnostics);
        self.config_checked = true;
        // Variables of fields dropped for their problems still count as defined.
        let dropped = |p: &str| report.removals.iter().any(|r| p == r || p.starts_with(&format!("{r}/")));
        let defines = report.defines.iter().filter(|(p, _)| parsed.is_none() || dropped(p)).cloned();
        self.facts.defines.extend(defines);
        if parsed.is_none() {
            for (pointer, target) in report.targets {
                if let Some(jump) = resolve_target(&target, self.ids, &pointer, self.diagnostics) {
                    self.facts.edges[self.index].push(jump);
                }
            }
        }
        parsed
    }

    /// Parses a template at `rel` and records the variables it uses.
    pub fn template(&mut self, rel: &str, text: &str) -> Option<Template> {
        self.template_with_locals(rel, text, &[])
    }

    /// Like [`BuildContext::template`], for a template that may also use names the step itself
    /// provides when rendering (`{{login_url}}` in `oauth_request`); those are not flow
    /// variables and are not checked as such.
    pub fn template_with_locals(&mut self, rel: &str, text: &str, locals: &[&str]) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => {
                for v in t.vars() {
                    let local = matches!(&v.root, Root::Var(name) if locals.contains(&name.as_str()));
                    if !local {
                        self.use_var(rel, v);
                    }
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

    /// Resolves a jump target at `rel`, reporting a dangling one. Every target a step may jump
    /// to must be resolved here (or with [`BuildContext::labeled_target`]): the whole-flow checks
    /// and pictures of the flow know the step's edges from these calls.
    pub fn target(&mut self, rel: &str, target: &Target) -> Option<Jump> {
        self.jump_to(rel, target, None)
    }

    /// [`BuildContext::target`] with a short text for people saying when the step takes this
    /// way (a branch case's condition), shown on the edge in pictures of the flow.
    pub fn labeled_target(&mut self, rel: &str, target: &Target, label: impl Into<String>) -> Option<Jump> {
        self.jump_to(rel, target, Some(label.into()))
    }

    fn jump_to(&mut self, rel: &str, target: &Target, label: Option<String>) -> Option<Jump> {
        let jump = resolve_target(target, self.ids, &self.pointer(rel), self.diagnostics)?;
        self.facts.edges[self.index].push(jump);
        self.facts.jumps[self.index].push(StepJump { pointer: rel.to_string(), label, jump });
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
                let candidates = ids.keys().map(StepId::as_str).chain(std::iter::once("end"));
                let hint = match nearest(id.as_str(), candidates) {
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

/// Checks `value` (at `base`) against the JSON Schema of `T`, reporting every problem in the
/// flow's vocabulary, then deserializes what is usable. `also_known` are fields handled
/// elsewhere at the top level of `value` (a step's common fields), offered as suggestions too.
///
/// Optional fields with problems are dropped before deserializing, so the value is still
/// returned and later checks can report more; the diagnostics already make the flow fail. The
/// report tells what the value defines and targets even when `T` could not be built.
pub(crate) fn parse_checked<T: DeserializeOwned + JsonSchema>(
    value: &Value,
    base: &str,
    also_known: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> (Option<T>, ShapeReport) {
    let schema = crate::schema::schema_of::<T>();
    let mut report = shape::check(value, &schema, base, also_known);
    diags.append(&mut report.diags);
    if report.fatal {
        return (None, report);
    }
    let cleaned = report.cleaned(value, base);
    match serde_path_to_error::deserialize::<_, T>(&cleaned) {
        Ok(t) => (Some(t), report),
        Err(err) => {
            let pointer = path_tokens(err.path()).iter().fold(base.to_string(), |p, t| pointer_push(&p, t));
            let code =
                if err.inner().to_string().starts_with("missing field") { "missing-field" } else { "invalid-value" };
            diags.push(Diagnostic::error(code, pointer, designer_words(&err.inner().to_string())));
            report.fatal = true;
            (None, report)
        }
    }
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

/// Rewrites what serde says about a type (`invalid type: string "x", expected u32`) in the flow's
/// words. The schema check catches these first; this covers custom validation messages, which
/// are written for designers already and pass through unchanged.
fn designer_words(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ") else { return message.to_string() };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else { return message.to_string() };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number ≥ 0",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a boolean" => "true or false",
        "a map" => "an object",
        e if e.starts_with("struct ") => "an object",
        e => e,
    };
    let found = match found {
        "sequence" => "a list",
        "map" => "an object",
        f => f,
    };
    format!("expected {expected}, found {found}")
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
    let doc: Value = match duplicates::parse(source) {
        Ok((v, repeated)) => {
            if !repeated.is_empty() {
                diags.extend(duplicates::diagnostics(source, &repeated));
            }
            v
        }
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
    let (cfg, top) = parse_checked::<FlowConfig>(&doc, "", &[], diags);
    // Even when the top level is broken, look at the steps and variables to report their
    // problems too (and not report variables as undefined because the top level is broken).
    let raw_steps: Vec<Value> = match &cfg {
        Some(c) => c.steps.clone(),
        None => doc.get("steps").and_then(Value::as_array).cloned().unwrap_or_default(),
    };
    let mut initial: BTreeSet<String> = match &cfg {
        Some(c) => c.variables.keys().map(|k| k.as_str().to_string()).collect(),
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
            initial.insert(crate::fallback::ERROR_VARIABLE.to_string());
        }
    } else if doc.pointer("/trigger/type").and_then(Value::as_str) == Some("error") {
        initial.insert(crate::fallback::ERROR_VARIABLE.to_string());
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
    let mut headers: Vec<Option<(Option<StepHeader>, String, Value)>> = Vec::new();
    let mut ids: HashMap<StepId, usize> = HashMap::new();
    let mut header_targets = Vec::new();
    for (i, raw) in raw_steps.iter().enumerate() {
        let base = format!("/steps/{i}");
        let Some(obj) = raw.as_object() else {
            diags.push(Diagnostic::error("invalid-value", base, "a step must be a JSON object with `id` and `type`"));
            headers.push(None);
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
        headers.push(Some((header, kind, Value::Object(rest))));
    }
    for (pointer, target) in &header_targets {
        resolve_target(target, &ids, pointer, diags);
    }

    // Pass 2: build each step.
    let mut facts = Facts {
        edges: vec![Vec::new(); raw_steps.len()],
        jumps: vec![Vec::new(); raw_steps.len()],
        ..Facts::default()
    };
    let mut used_integrations = BTreeSet::new();
    let mut metadata_integrations = BTreeSet::new();
    let mut steps = Vec::new();
    let mut all_built = true;
    let placeholder_id = StepId::new("_").ok()?;
    for (i, entry) in headers.iter().enumerate() {
        let base = format!("/steps/{i}");
        let Some((header, kind, config)) = entry else {
            all_built = false;
            continue;
        };
        let (next, on_error) = match header {
            Some(h) => {
                let next = h.next.as_ref().and_then(|t| resolve_target(t, &ids, &format!("{base}/next"), diags));
                let on_error =
                    h.on_error.as_ref().and_then(|t| resolve_target(t, &ids, &format!("{base}/on_error"), diags));
                facts.edges[i].extend(next.iter().chain(on_error.iter()).copied());
                (next, on_error)
            }
            None => (None, None),
        };
        let Some(step_type) = opts.registry.get(kind) else {
            if header.is_some() {
                let names = opts.registry.names();
                let hint = match nearest(kind, names.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`? Known step types: {}", names.join(", ")),
                    None => format!("known step types: {}", names.join(", ")),
                };
                diags.push(
                    Diagnostic::error(
                        "unknown-step-type",
                        format!("{base}/type"),
                        format!("unknown step type `{kind}`"),
                    )
                    .with_hint(hint),
                );
            }
            facts.defines.extend(guess_defines(config).into_iter().map(|(p, v)| (format!("{base}{p}"), v)));
            all_built = false;
            continue;
        };
        // A step whose header is broken is still built (under a placeholder id) to report the
        // problems of its own fields.
        let step_id = header.as_ref().map_or(&placeholder_id, |h| &h.id);
        let mut cx = BuildContext {
            step_id,
            base: base.clone(),
            ids: &ids,
            index: i,
            integrations: opts.integrations,
            diagnostics: diags,
            facts: &mut facts,
            used_integrations: &mut used_integrations,
            metadata_integrations: &mut metadata_integrations,
            config_checked: false,
        };
        let built = step_type.build(config, &mut cx);
        let config_checked = cx.config_checked;
        match (built, header) {
            (Some(step), Some(header)) => {
                let behavior = step.behavior();
                steps.push(CompiledStep {
                    id: header.id.clone(),
                    type_name: header.kind.as_str().into(),
                    next,
                    on_error,
                    jumps: std::mem::take(&mut facts.jumps[i]),
                    description: header.description.clone(),
                    step,
                    behavior,
                });
            }
            (built, _) => {
                if built.is_none() && !config_checked {
                    facts.defines.extend(guess_defines(config).into_iter().map(|(p, v)| (format!("{base}{p}"), v)));
                }
                all_built = false;
            }
        }
    }

    let flow_on_error = match &cfg {
        Some(c) => c.on_error.as_ref().and_then(|t| resolve_target(t, &ids, "/on_error", diags)),
        None => {
            for (pointer, target) in top.targets.iter().filter(|(p, _)| p == "/on_error") {
                resolve_target(target, &ids, pointer, diags);
            }
            None
        }
    };
    let trigger = cfg.as_ref().and_then(|c| compile_trigger(c.trigger.as_ref(), opts.integrations, diags));
    let initial: BTreeSet<&str> = initial.iter().map(String::as_str).collect();
    let secrets = analysis::check_variables(&facts, &initial, diags);
    if all_built && steps.len() == raw_steps.len() {
        let roots: Vec<usize> = flow_on_error
            .iter()
            .filter_map(|j| match j {
                Jump::Step(i) => Some(*i),
                Jump::End => None,
            })
            .collect();
        analysis::check_graph(&steps, &facts, &roots, diags);
    }
    let cfg = cfg?;
    if !all_built {
        return None;
    }
    Some(CompiledFlow {
        id: cfg.id,
        name: cfg.name,
        trigger,
        variables: cfg.variables.into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect(),
        steps,
        on_error: flow_on_error,
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
