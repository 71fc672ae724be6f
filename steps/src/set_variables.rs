//! `set_variables`: set variables from values and templates.

use std::collections::BTreeMap;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tern_engine::diagnostics::pointer_push;
use tern_engine::template::JsonTemplate;
use tern_engine::{BuildContext, Outcome, Step, StepContext, StepFailure, StepType, VarName, schema::schema_of};

/// Config of `set_variables`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Variable → value. Strings are templates; `"{{x}}"` alone keeps x's JSON type.
    variables: BTreeMap<VarName, Value>,
}

pub struct SetVariables;

impl StepType for SetVariables {
    fn name(&self) -> &str {
        "set_variables"
    }
    fn description(&self) -> &str {
        "Set variables from values and templates"
    }
    fn config_schema(&self) -> Value {
        schema_of::<Config>()
    }
    fn build(&self, config: &Value, cx: &mut BuildContext<'_>) -> Option<Box<dyn Step>> {
        let cfg: Config = cx.config(config)?;
        let mut vars = Vec::new();
        let mut ok = true;
        for (name, value) in &cfg.variables {
            let rel = pointer_push("/variables", name.as_str());
            cx.defines(&rel, name);
            match cx.json_template(&rel, value) {
                Some(t) => vars.push((name.clone(), t)),
                None => ok = false,
            }
        }
        ok.then(|| Box::new(Set { vars }) as Box<dyn Step>)
    }
}

#[derive(Debug)]
struct Set {
    vars: Vec<(VarName, JsonTemplate)>,
}

#[async_trait]
impl Step for Set {
    async fn run(&self, cx: &mut StepContext<'_>) -> Result<Outcome, StepFailure> {
        // Render everything first, so that values see the variables as they were before the step.
        let values =
            self.vars.iter().map(|(n, t)| Ok((n, t.render(&cx.scope())?))).collect::<Result<Vec<_>, StepFailure>>()?;
        for (name, value) in values {
            cx.set_var(name, value);
        }
        Ok(Outcome::Next)
    }
}
