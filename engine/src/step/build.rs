//! Building a step: the [`BuildContext`] a [`StepType`](super::StepType) parses its fields and
//! reports problems through. It records what the whole-flow checks need ([`Facts`]: variables
//! used and set, jump targets, integrations), so a step type cannot forget to declare an edge
//! or a variable: templates, requests and targets are compiled through it.

use std::collections::{BTreeSet, HashMap};

use regex::Regex;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Jump, StepJump};
use crate::checked::parse_checked;
use crate::diagnostics::{Diagnostic, nearest};
use crate::expr::{Expression, Kind};
use crate::flow::HEADER_FIELDS;
use crate::http::{RequestConfig, RequestTemplate};
use crate::ids::{IntegrationName, StepId, Target, VarName};
use crate::mapping::{Mapping, MappingConfig, ResponsePath, TRANSFORM_VALUE};
use crate::template::{JsonTemplate, RESERVED_ROOTS, Root, Template, VarRef};

/// What the steps of a flow declare while they are built, for the whole-flow checks
/// (`analysis.rs`) and the compiled flow.
#[derive(Default)]
pub(crate) struct Facts {
    /// Placeholders used, at their absolute pointers.
    pub uses: Vec<(String, VarRef)>,
    /// Variables set, at their absolute pointers.
    pub defines: Vec<(String, VarName)>,
    /// Explicit edges of each step (targets named in its config, `next`, `on_error`).
    pub edges: Vec<Vec<Jump>>,
    /// The targets each step declared through [`BuildContext::target`], for pictures of the flow.
    pub jumps: Vec<Vec<StepJump>>,
    /// Integrations the steps use.
    pub integrations: BTreeSet<IntegrationName>,
    /// Integrations whose metadata templates read (`{{integration.NAME.FIELD}}`).
    pub integration_metadata: BTreeSet<IntegrationName>,
    /// Origins that requests write out, at the pointers of their URLs (checked against the
    /// outbound guard without I/O: `private-address`).
    pub literal_origins: Vec<(String, url::Url)>,
    /// The calls to other flows (`call_flow`), for the checks across a set of flows.
    pub calls: Vec<super::FlowCall>,
}

impl Facts {
    /// Empty facts for a flow of `steps` steps.
    pub fn for_steps(steps: usize) -> Self {
        Self { edges: vec![Vec::new(); steps], jumps: vec![Vec::new(); steps], ..Self::default() }
    }
}

/// The interface a [`StepType`](super::StepType) uses to parse its config and report problems.
pub struct BuildContext<'a> {
    step_id: &'a StepId,
    base: String,
    ids: &'a HashMap<StepId, usize>,
    index: usize,
    integrations: Option<&'a BTreeSet<IntegrationName>>,
    diagnostics: &'a mut Vec<Diagnostic>,
    facts: &'a mut Facts,
    config_checked: bool,
}

impl<'a> BuildContext<'a> {
    /// The context for building step `index` (id `step_id`) of a flow whose step ids are `ids`;
    /// `integrations` are the ones that exist, when known.
    pub(crate) fn new(
        step_id: &'a StepId,
        index: usize,
        ids: &'a HashMap<StepId, usize>,
        integrations: Option<&'a BTreeSet<IntegrationName>>,
        diagnostics: &'a mut Vec<Diagnostic>,
        facts: &'a mut Facts,
    ) -> Self {
        Self {
            step_id,
            base: format!("/steps/{index}"),
            ids,
            index,
            integrations,
            diagnostics,
            facts,
            config_checked: false,
        }
    }

    /// Whether the step type checked its fields with [`config`](Self::config) (when it did,
    /// what they define is known; when not, the compiler guesses).
    pub(crate) fn config_checked(&self) -> bool {
        self.config_checked
    }

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

    /// Reports a warning (the flow still loads) at a pointer relative to the step.
    pub fn warning(&mut self, code: &'static str, rel: &str, message: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::warning(code, self.pointer(rel), message);
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
        // … and so do the targets they name (a field dropped for a typo still joins the graph).
        let targets = report.targets.into_iter().filter(|(p, _)| parsed.is_none() || dropped(p));
        for (pointer, target) in targets {
            if let Some(jump) = resolve_target(&target, self.ids, &pointer, self.diagnostics) {
                self.facts.edges[self.index].push(jump);
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
                let hint = e.hint().to_string();
                self.error("bad-template", rel, e.message, Some(hint));
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
                let hint = e.hint().to_string();
                self.error("bad-template", &format!("{rel}{p}"), e.message, Some(hint));
                None
            }
        }
    }

    /// Parses an expression at `rel` (see [`crate::expr`]) and records the flow values it
    /// reads; a `bad-expression` error when it cannot be used.
    pub fn expression(&mut self, rel: &str, text: &str) -> Option<Expression> {
        match Expression::parse(text) {
            Ok(e) => {
                for v in e.refs() {
                    self.use_var(rel, v);
                }
                Some(e)
            }
            Err(e) => {
                self.error(
                    "bad-expression",
                    rel,
                    e.to_string(),
                    Some("expressions are CEL, such as `order.total > 100 && contact.country == 'FR'`; see the README's Expressions section".into()),
                );
                None
            }
        }
    }

    /// [`BuildContext::expression`] for a condition: a `not-a-condition` error when the
    /// expression is known to give something other than true or false.
    pub fn condition(&mut self, rel: &str, text: &str) -> Option<Expression> {
        let e = self.expression(rel, text)?;
        if !matches!(e.kind(), Kind::Bool | Kind::Any) {
            self.error(
                "not-a-condition",
                rel,
                format!("`{}` gives {}, but a condition must give true or false", e.source(), e.kind().words()),
                Some("compare it: `x > 0`, `x != null`, `x == 'yes'`".into()),
            );
            return None;
        }
        Some(e)
    }

    /// Compiles a request at `rel`.
    pub fn request(&mut self, rel: &str, cfg: &RequestConfig) -> Option<RequestTemplate> {
        match RequestTemplate::compile(cfg) {
            Ok(r) => {
                for (p, v) in r.vars() {
                    self.use_var(&format!("{rel}{p}"), v);
                }
                if let Some(origin) = r.literal_origin() {
                    self.facts.literal_origins.push((self.pointer(&format!("{rel}/url")), origin));
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
        let path = match ResponsePath::parse(path) {
            Ok(path) => Some(path),
            Err(e) => {
                self.error("bad-json-path", &at, e.to_string(), Some(e.hint().into()));
                None
            }
        };
        let transform = match cfg.transform() {
            None => Some(None),
            Some(text) => self.transform(&format!("{rel}/transform"), text).map(Some),
        };
        Some(Mapping { path: path?, default: default.cloned(), transform: transform? })
    }

    /// A mapping's `transform`: an expression that reads only the selected `value`.
    fn transform(&mut self, rel: &str, text: &str) -> Option<Expression> {
        match Expression::parse_with_locals(text, &[TRANSFORM_VALUE]) {
            Ok(e) if e.refs().is_empty() => Some(e),
            Ok(e) => {
                let names: Vec<&str> = e.refs().iter().map(|r| r.raw.as_str()).collect();
                let typo = names
                    .iter()
                    .find_map(|n| nearest(n.split('.').next().unwrap_or(n), std::iter::once(TRANSFORM_VALUE)));
                let hint = match typo {
                    Some(v) => format!("did you mean `{v}`?"),
                    None => "map the field first, then compute with other variables in a `set_variables` step".into(),
                };
                self.error(
                    "bad-expression",
                    rel,
                    format!("a transform reads only `value` (the selected field), not `{}`", names.join("`, `")),
                    Some(hint),
                );
                None
            }
            Err(e) => {
                self.error("bad-expression", rel, e.to_string(), None);
                None
            }
        }
    }

    /// A bound the flow may set at `rel` (`max_items`, `max_pages`): `given`, or `default`
    /// when absent; an `invalid-value` error when it is not from 1 to `max`.
    pub fn bound(&mut self, rel: &str, given: Option<u32>, default: u32, max: u32) -> Option<u32> {
        let value = given.unwrap_or(default);
        if value == 0 || value > max {
            let field = rel.rsplit('/').next().unwrap_or(rel);
            self.error("invalid-value", rel, format!("`{field}` is {value}; give a number from 1 to {max}"), None);
            return None;
        }
        Some(value)
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

    /// Records that the step runs flow `flow` (its id at `rel`) with `inputs`, taking back
    /// `outputs` as (this flow's variable, the called flow's output): checked against the
    /// called flow's interface when a set of flows is loaded
    /// ([`check_calls`](crate::flow_set::check_calls)).
    pub fn calls(
        &mut self,
        rel: &str,
        flow: &crate::ids::FlowId,
        inputs: BTreeSet<VarName>,
        outputs: Vec<(VarName, VarName)>,
    ) {
        let pointer = self.pointer(rel);
        let step_pointer = self.pointer("");
        self.facts.calls.push(super::FlowCall {
            step: self.step_id.clone(),
            pointer,
            step_pointer,
            flow: flow.clone(),
            inputs,
            outputs,
        });
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
        self.facts.integrations.insert(name.clone());
    }

    /// Records a placeholder used at `rel` (done for you by `template`, `request` etc.).
    pub fn use_var(&mut self, rel: &str, var: &VarRef) {
        if let Root::Integration(name) = &var.root {
            let name = name.clone();
            self.integration(rel, &name);
            self.facts.integration_metadata.insert(name);
        }
        self.facts.uses.push((self.pointer(rel), var.clone()));
    }
}

/// The jump a target names, or a `dangling-target` error at `pointer` with the nearest id.
pub(crate) fn resolve_target(
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
