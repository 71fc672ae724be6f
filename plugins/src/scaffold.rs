//! `tern plugins new`: the files of a new step plugin, ready to build. Pure: the command writes
//! them. A scaffold is self-contained (the world's WIT and the helper library are copied in, from
//! the same files this repository builds its examples with, so they cannot drift), pins its
//! toolchain, and its README's three commands build it, run it once and install it.
//!
//! Only JavaScript for now (componentize-qjs from npm); C and Python scaffolds are not written
//! yet, and the command says so.

use std::path::PathBuf;

/// The helper library the JavaScript scaffold imports (`plugins/sdk/js/tern-step.js`).
pub const JS_HELPER: &str = include_str!("../sdk/js/tern-step.js");

/// The world (`plugins/wit/step.wit`).
pub const WIT: &str = include_str!("../wit/step.wit");

/// The componentize-qjs version the scaffold pins (the one the examples are built and tested
/// with).
pub const COMPONENTIZE_QJS: &str = "0.4.5";

/// Why a scaffold cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a step type name.
    #[error(
        "`{name}` cannot be a step type name: use lowercase letters, digits, `_`, `-` and `.`, starting with a letter and not ending with a sign (e.g. `acme.lookup-contact`)"
    )]
    BadName {
        /// The name given.
        name: String,
    },
}

/// One file of a scaffold: its path inside the scaffold's folder and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaffoldFile {
    /// The path, relative to the folder.
    pub path: PathBuf,
    /// The text.
    pub text: String,
}

/// The folder a scaffold of step type `name` goes in: the name with `.` as `-`.
pub fn folder_name(name: &str) -> String {
    name.replace('.', "-")
}

/// The configuration the scaffold's README runs the step with once (`tern plugins check
/// --step-config`), and what it sets.
pub const SAMPLE_CONFIG: &str = r#"{"text": "hello", "save_as": "loud"}"#;

/// The files of a JavaScript step plugin of step type `name`: `plugin.js` (a step that
/// upper-cases a text, written with the helper library), `tern-step.js`, `wit/step.wit`,
/// `package.json` (the pinned toolchain and the build), `README.md` (three commands) and
/// `.gitignore`.
///
/// # Errors
/// [`ScaffoldError::BadName`].
pub fn javascript(name: &str) -> Result<Vec<ScaffoldFile>, ScaffoldError> {
    // The loader's rule, and a name a person would write: no empty part (`acme..x`), no
    // trailing `.`, `-` or `_`.
    let tidy = !name.contains("..") && !name.ends_with(['.', '-', '_']);
    if !crate::valid_name(name) || !tidy {
        return Err(ScaffoldError::BadName { name: name.to_string() });
    }
    let folder = folder_name(name);
    let wasm = format!("{folder}.wasm");
    let plugin = format!(
        r#"// {name}: upper-cases a text into a variable. Change `run` to do your step's work;
// `http.fetch({{ url, integration }})` calls an API through an integration (see tern-step.js).
import {{ step, StepError }} from "./tern-step.js";

export const {{ describe, run }} = step({{
  name: "{name}",
  version: "0.1.0",
  description: "Upper-cases a text into a variable",
  config: {{
    text: {{ type: "string", description: "The text (placeholders allowed)." }},
    save_as: {{ type: "string", description: "The variable that receives the result." }},
  }},
  required: ["text", "save_as"],
  run(config) {{
    if (config.text.trim() === "") throw new StepError("invalid-config", "the text is empty");
    return {{ [config.save_as]: config.text.toUpperCase() }};
  }},
}});
"#
    );
    let package = format!(
        r#"{{
  "name": "{folder}",
  "private": true,
  "description": "A Tern step plugin: {name}",
  "scripts": {{
    "build": "componentize-qjs --wit wit --world step --js plugin.js --module-root . --sync --stub-wasi -o {wasm}"
  }},
  "devDependencies": {{
    "componentize-qjs": "{COMPONENTIZE_QJS}"
  }}
}}
"#
    );
    let readme = format!(
        r#"# {name}

A Tern step plugin in JavaScript. Build it, run it once, install it:

```sh
npm install && tern plugins build .
tern plugins check {wasm} --step-config '{SAMPLE_CONFIG}'
tern plugins install {wasm}
```

Then use it in a flow: `{{"id": "shout", "type": "{name}", "text": "{{{{message.text}}}}", "save_as": "loud"}}`.

- `plugin.js` is the step; `tern-step.js` is Tern's helper library (parsed JSON in and out,
  errors as values, `http.fetch` through an integration); `wit/step.wit` is the world.
- `npm install` needs Node.js and npm: it installs componentize-qjs {COMPONENTIZE_QJS}, which
  `tern plugins build .` (or `npm run build`) uses to build `{wasm}`.
- A field the step's `config` does not list is reported as a typo by `tern validate`.
"#
    );
    Ok(vec![
        ScaffoldFile { path: "plugin.js".into(), text: plugin },
        ScaffoldFile { path: "tern-step.js".into(), text: JS_HELPER.to_string() },
        ScaffoldFile { path: PathBuf::from("wit").join("step.wit"), text: WIT.to_string() },
        ScaffoldFile { path: "package.json".into(), text: package },
        ScaffoldFile { path: "README.md".into(), text: readme },
        ScaffoldFile { path: ".gitignore".into(), text: "node_modules/\n*.wasm\n".to_string() },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaffold_names_its_step_and_refuses_a_bad_name() {
        let Ok(files) = javascript("acme.hello") else { panic!("a good name") };
        let text = |p: &str| {
            files.iter().find(|f| f.path == std::path::Path::new(p)).map(|f| f.text.clone()).unwrap_or_default()
        };
        assert!(text("plugin.js").contains(r#"name: "acme.hello""#));
        assert!(text("package.json").contains("-o acme-hello.wasm") && text("package.json").contains("\"0.4.5\""));
        assert!(text("README.md").contains("tern plugins check acme-hello.wasm --step-config"));
        for bad in ["Acme Hello", "acme..hello", "acme-", "acme."] {
            assert!(matches!(javascript(bad), Err(ScaffoldError::BadName { .. })), "{bad}");
        }
    }
}
