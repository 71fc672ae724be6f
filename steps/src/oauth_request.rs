//! `oauth_request`: the contact logs in to an integration inside the conversation (CSML's
//! OAuthRequest). The step sends a login link (authorization code + PKCE, bound to this
//! conversation), pauses, and resumes when the login completes, with `{"success": true}` (or
//! `false` and an `error`) in `save_as`. Later steps use the contact's token with
//! `"token": "contact"`. A contact who already has a token skips the link.
//!
//! The link goes where the text says `{{login_url}}`, or on its own line after the text. When
//! the contact writes something instead of logging in, the step sends `reprompt_text` with a
//! fresh link.

use std::borrow::Cow;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_engine::template::{RenderError, Root, Scope, Template, VarRef};
use tern_engine::{
    Behavior, BuildContext, IntegrationName, Outcome, Step, StepContext, StepFailure, StepType, TokenOwner, VarName,
    schema::schema_of,
};

/// Config of `oauth_request`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The integration to log in to.
    integration: IntegrationName,
    /// The message sent with the login link (a template). Place the link with `{{login_url}}`;
    /// without it, the link follows on its own line.
    text: String,
    /// Sent with a fresh link when the contact writes instead of logging in (a template, may
    /// use `{{login_url}}`; default "Please log in first:").
    #[serde(default)]
    reprompt_text: Option<String>,
    /// Variable that receives `{"success": true}` or `{"success": false, "error": "…"}`.
    save_as: VarName,
}

pub struct OAuthRequest;

impl StepType for OAuthRequest {
    fn name(&self) -> &str {
        "oauth_request"
    }
    fn description(&self) -> &str {
        "Send the contact a login link for an integration, wait until they authorized, store the outcome"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        cx.integration("/integration", &cfg.integration);
        cx.defines("/save_as", &cfg.save_as);
        let text = cx.template_with_locals("/text", &cfg.text, &[LOGIN_URL]);
        let reprompt =
            cx.template_with_locals("/reprompt_text", cfg.reprompt_text.as_deref().unwrap_or(REPROMPT), &[LOGIN_URL]);
        Some(Box::new(Login { integration: cfg.integration, text: text?, reprompt: reprompt?, save_as: cfg.save_as }))
    }
}

/// The placeholder for the link in `text` and `reprompt_text`.
const LOGIN_URL: &str = "login_url";

/// The default `reprompt_text`.
const REPROMPT: &str = "Please log in first:";

#[derive(Debug)]
struct Login {
    integration: IntegrationName,
    text: Template,
    reprompt: Template,
    save_as: VarName,
}

/// The run's scope plus `{{login_url}}`.
struct WithLoginUrl<'a> {
    run: &'a dyn Scope,
    url: &'a str,
}

impl Scope for WithLoginUrl<'_> {
    fn resolve(&self, var: &VarRef) -> Result<Cow<'_, Value>, RenderError> {
        match &var.root {
            Root::Var(name) if name.as_str() == LOGIN_URL && var.path.is_empty() => {
                Ok(Cow::Owned(Value::String(self.url.to_string())))
            }
            _ => self.run.resolve(var),
        }
    }
}

/// Whether a template places the link itself.
fn uses_login_url(t: &Template) -> bool {
    t.vars().any(|v| matches!(&v.root, Root::Var(n) if n.as_str() == LOGIN_URL))
}

impl Login {
    fn owner(cx: &StepContext<'_>) -> Result<TokenOwner, StepFailure> {
        cx.contact_id().map(|id| TokenOwner::Contact(id.into_owned())).ok_or_else(|| StepFailure::Other {
            code: "no-contact",
            message: "oauth_request needs the conversation's contact id, and the message had none".into(),
        })
    }

    async fn send_link(&self, cx: &mut StepContext<'_>, text: &Template) -> Result<Outcome, StepFailure> {
        let owner = Self::owner(cx)?;
        let tokens = cx.outbound().tokens.clone().ok_or_else(|| {
            StepFailure::Http(tern_engine::http::HttpError::Token(tern_engine::TokenError::NoTokenSource {
                integration: self.integration.clone(),
            }))
        })?;
        let conversation = cx.conversation_id().to_string();
        let url = tokens
            .login_url(&self.integration, &owner, &conversation)
            .await
            .map_err(|e| StepFailure::Http(tern_engine::http::HttpError::Token(e)))?;
        let url = url.to_string();
        let rendered = {
            let run = cx.scope();
            text.render(&WithLoginUrl { run: &run, url: &url })?
        };
        cx.reply(if uses_login_url(text) { rendered } else { format!("{rendered}\n{url}") });
        Ok(Outcome::Pause(json!({ "integration": self.integration.as_str() })))
    }
}

#[async_trait]
impl Step for Login {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        let owner = Self::owner(cx)?;
        if let Some(tokens) = cx.outbound().tokens.clone()
            && tokens.grant(&self.integration, &owner).await.is_ok()
        {
            cx.set_var(&self.save_as, json!({ "success": true }));
            return Ok(Outcome::Next);
        }
        self.send_link(cx, &self.text).await
    }

    async fn resume(&self, cx: &mut StepContext<'_>, _: Value) -> Result<Outcome, StepFailure> {
        let login = cx.event().and_then(|e| e.get("login")).cloned();
        match login {
            Some(l) if l.get("integration").and_then(Value::as_str) == Some(self.integration.as_str()) => {
                let success = l.get("success").and_then(Value::as_bool).unwrap_or(false);
                let mut result = json!({ "success": success });
                if let Some(e) = l.get("error") {
                    result["error"] = e.clone();
                }
                cx.set_var(&self.save_as, result);
                Ok(Outcome::Next)
            }
            // The contact wrote something instead of logging in: send a fresh link.
            _ => self.send_link(cx, &self.reprompt).await,
        }
    }

    fn behavior(&self) -> Behavior {
        Behavior { pauses: true, ..Behavior::default() }
    }
}
