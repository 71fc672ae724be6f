//! `oauth_request`: the contact logs in to an integration inside the conversation (CSML's
//! OAuthRequest). The step sends a login link (authorization code + PKCE, bound to this
//! conversation), pauses, and resumes when the login completes, with `{"success": true}` (or
//! `false` and an `error`) in `save_as`. Later steps use the contact's token with
//! `"token": "contact"`. A contact who already has a token skips the link.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_engine::template::Template;
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
    /// The message sent with the login link (a template); the link follows on its own line.
    text: String,
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
        let text = cx.template("/text", &cfg.text)?;
        Some(Box::new(Login { integration: cfg.integration, text, save_as: cfg.save_as }))
    }
}

#[derive(Debug)]
struct Login {
    integration: IntegrationName,
    text: Template,
    save_as: VarName,
}

impl Login {
    fn owner(cx: &StepContext<'_>) -> Result<TokenOwner, StepFailure> {
        cx.contact_id().map(|id| TokenOwner::Contact(id.to_string())).ok_or_else(|| StepFailure::Other {
            code: "no-contact",
            message: "oauth_request needs the conversation's contact id, and the message had none".into(),
        })
    }

    async fn send_link(&self, cx: &mut StepContext<'_>, prefix: String) -> Result<Outcome, StepFailure> {
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
        cx.reply(format!("{prefix}\n{url}"));
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
        let text = self.text.render(&cx.scope())?;
        self.send_link(cx, text).await
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
            _ => self.send_link(cx, "Please log in first:".to_string()).await,
        }
    }

    fn behavior(&self) -> Behavior {
        Behavior { pauses: true, terminal: false }
    }
}
