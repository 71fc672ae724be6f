//! The choices of `send_message` and `ask` (buttons or a list, rendered per platform by the
//! channel): a fixed list (`choices`), or one per item of an array variable (`choices_from`:
//! e.g. the contacts a CRM search found). Titles and payloads are templates; in
//! `choices_from`, `{{item}}` is the item and `{{index}}` its position from 0.
//!
//! Checked by `tern validate` where it can be: at most [`MAX_CHOICES`] fixed choices, not both
//! forms, no two fixed payloads alike (a warning when they differ only in letter case, since a
//! typed answer is matched without case); a warning for a fixed title longer than WhatsApp's
//! 20-character button (the choices are then a list, or numbered text beyond 24) and for a
//! fixed payload longer than Telegram's 64-byte callback data. At run time titles and payloads
//! are cut to their bounds ([`Choice::new`]) and `choices_from` takes the first
//! [`MAX_CHOICES`] items.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::template::{RenderError, Root, Scope, Template, VarRef};
use tern_engine::{BuildContext, Choice, MAX_CHOICES, StepContext, StepFailure, VarName};

/// WhatsApp's longest reply-button title, in characters.
const BUTTON_TITLE_CHARS: usize = 20;
/// Telegram's longest callback data, in bytes.
const CALLBACK_DATA_BYTES: usize = 64;

/// One fixed choice.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChoiceConfig {
    /// What the contact sees (a template; at most 100 characters are shown).
    title: String,
    /// What choosing it answers (a template; default: the title).
    #[serde(default)]
    payload: Option<String>,
}

/// Choices made from an array variable, one per item (the first 10).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChoicesFrom {
    /// The variable holding the array (e.g. a CRM search's results).
    variable: VarName,
    /// Each choice's title: a template where `{{item}}` is the item and `{{index}}` its
    /// position from 0 (`{{item.name}}`).
    title: String,
    /// Each choice's payload: a template like `title` (default: the title), e.g.
    /// `{{item.id}}`.
    #[serde(default)]
    payload: Option<String>,
}

const ITEM: &str = "item";
const INDEX: &str = "index";

/// The choices of a step, built.
#[derive(Debug, Default)]
pub(crate) struct Choices {
    fixed: Vec<(Template, Option<Template>)>,
    from: Option<From>,
}

#[derive(Debug)]
struct From {
    variable: Template,
    title: Template,
    payload: Option<Template>,
}

impl Choices {
    /// Builds `choices` (at `/choices`) and `choices_from` (at `/choices_from`), reporting every
    /// problem.
    pub(crate) fn build(
        cx: &mut BuildContext<'_>,
        fixed: Vec<ChoiceConfig>,
        from: Option<ChoicesFrom>,
    ) -> Option<Self> {
        let mut ok = true;
        if !fixed.is_empty() && from.is_some() {
            cx.error(
                "choices-twice",
                "/choices_from",
                "a step has `choices` or `choices_from`, not both",
                Some(
                    "keep the fixed list in `choices`, or make every choice from the array with `choices_from`".into(),
                ),
            );
            ok = false;
        }
        if fixed.len() > MAX_CHOICES {
            cx.error(
                "too-many-choices",
                "/choices",
                format!("{} choices; a reply offers at most {MAX_CHOICES} (WhatsApp's longest list)", fixed.len()),
                Some("split the question in two, or let the contact type the answer".into()),
            );
            ok = false;
        }
        let mut built = Vec::new();
        let mut payloads: Vec<(String, usize)> = Vec::new();
        for (i, c) in fixed.iter().enumerate() {
            let title = cx.template(&format!("/choices/{i}/title"), &c.title);
            let payload = c.payload.as_ref().map(|p| (p, cx.template(&format!("/choices/{i}/payload"), p)));
            let static_title = title.as_ref().filter(|t| t.vars().next().is_none()).map(|_| c.title.trim());
            if let Some(t) = static_title {
                if t.is_empty() {
                    cx.error("empty-choice", &format!("/choices/{i}/title"), "a choice needs a title", None);
                    ok = false;
                } else if t.chars().count() > BUTTON_TITLE_CHARS {
                    cx.warning(
                        "long-choice-title",
                        &format!("/choices/{i}/title"),
                        format!("the title has {} characters; WhatsApp's buttons show at most {BUTTON_TITLE_CHARS}", t.chars().count()),
                        Some("on WhatsApp these choices become a list (24 characters) or numbered text; shorten the title to keep buttons".into()),
                    );
                }
            }
            let written = c.payload.as_deref().unwrap_or(&c.title).trim().to_string();
            let static_payload = match &payload {
                Some((p, Some(t))) if t.vars().next().is_none() => Some(p.trim().to_string()),
                None if static_title.is_some() => Some(written.clone()),
                _ => None,
            };
            if let Some(p) = static_payload {
                if p.len() > CALLBACK_DATA_BYTES {
                    cx.warning(
                        "long-choice-payload",
                        &format!("/choices/{i}{}", if c.payload.is_some() { "/payload" } else { "/title" }),
                        format!(
                            "the payload has {} bytes; Telegram's buttons carry at most {CALLBACK_DATA_BYTES}",
                            p.len()
                        ),
                        Some("on Telegram these choices become numbered text; give a shorter `payload`".into()),
                    );
                }
                if let Some((_, j)) = payloads.iter().find(|(q, _)| *q == p) {
                    cx.error(
                        "duplicate-choice",
                        &format!("/choices/{i}"),
                        format!("choice {i} answers `{p}`, like choice {j}: the answer could not tell them apart"),
                        Some("give each choice its own `payload`".into()),
                    );
                    ok = false;
                } else if let Some((q, j)) = payloads.iter().find(|(q, _)| q.eq_ignore_ascii_case(&p)) {
                    // A typed answer is matched without case: `yes` would always pick the first.
                    cx.warning(
                        "similar-choices",
                        &format!("/choices/{i}"),
                        format!("choice {i} answers `{p}` and choice {j} `{q}`: a contact who types either one gets choice {j}"),
                        Some("make the payloads differ in more than letter case".into()),
                    );
                }
                payloads.push((p, i));
            }
            match (title, payload) {
                (Some(t), None) => built.push((t, None)),
                (Some(t), Some((_, Some(p)))) => built.push((t, Some(p))),
                _ => ok = false,
            }
        }
        let from = match from {
            None => None,
            Some(f) => {
                let variable = cx.template("/choices_from/variable", &format!("{{{{{}}}}}", f.variable));
                let title = cx.template_with_locals("/choices_from/title", &f.title, &[ITEM, INDEX]);
                let payload =
                    f.payload.as_ref().map(|p| cx.template_with_locals("/choices_from/payload", p, &[ITEM, INDEX]));
                match (variable, title, payload) {
                    (Some(variable), Some(title), None) => Some(From { variable, title, payload: None }),
                    (Some(variable), Some(title), Some(Some(p))) => Some(From { variable, title, payload: Some(p) }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };
        ok.then_some(Self { fixed: built, from })
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.from.is_none()
    }

    /// The choices, rendered in the run's scope.
    ///
    /// # Errors
    /// A template that cannot be rendered; `choices_from`'s variable not an array.
    pub(crate) fn render(&self, cx: &StepContext<'_>) -> Result<Vec<Choice>, StepFailure> {
        let scope = cx.scope();
        let mut out = Vec::new();
        for (title, payload) in &self.fixed {
            let title = title.render(&scope)?;
            let payload = payload.as_ref().map(|p| p.render(&scope)).transpose()?.unwrap_or_default();
            out.push(Choice::new(&title, &payload));
        }
        if let Some(from) = &self.from {
            let items = match from.variable.render_value(&scope)? {
                Value::Array(items) => items,
                Value::Null => Vec::new(),
                other => {
                    return Err(StepFailure::Other {
                        code: "choices-not-a-list",
                        message: format!(
                            "`choices_from` needs a list in `{}`, which holds {}",
                            from.variable.vars().next().map(|v| v.raw.as_str()).unwrap_or_default(),
                            tern_engine::template::describe(&other)
                        ),
                    });
                }
            };
            for (index, item) in items.iter().take(MAX_CHOICES).enumerate() {
                let with = WithItem { run: &scope, item, index };
                let title = from.title.render(&with)?;
                let payload = from.payload.as_ref().map(|p| p.render(&with)).transpose()?.unwrap_or_default();
                if !title.trim().is_empty() {
                    out.push(Choice::new(&title, &payload));
                }
            }
        }
        Ok(out)
    }
}

/// The run's scope plus `{{item}}` and `{{index}}`.
struct WithItem<'a> {
    run: &'a dyn Scope,
    item: &'a Value,
    index: usize,
}

impl Scope for WithItem<'_> {
    fn resolve(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
        match &var.root {
            Root::Var(name) if name.as_str() == ITEM => {
                tern_engine::template::walk_path(self.item, &var.path, &var.raw).map(Cow::Borrowed)
            }
            Root::Var(name) if name.as_str() == INDEX && var.path.is_empty() => Ok(Cow::Owned(Value::from(self.index))),
            _ => self.run.resolve(var),
        }
    }
}
