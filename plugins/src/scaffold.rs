//! `tern plugins new`: the files of a new step plugin, ready to build. Pure: the command writes
//! them. A scaffold is self-contained (the world's WIT and the helper library are copied in, from
//! the same files this repository builds its examples with, so they cannot drift), pins its
//! toolchain, and its README's three commands build it, run it once and install it.
//!
//! Three languages, each with its helper library (parsed JSON in and out, errors as values):
//! JavaScript (componentize-qjs from npm), Python (componentize-py from PyPI) and C (clang-19
//! and wasi-libc). Every scaffold is the same step (it upper-cases a text) with the same
//! `fixture.json`, which `tern plugins test` passes out of the box.

use std::path::PathBuf;

/// The helper library the JavaScript scaffold imports (`plugins/sdk/js/tern-step.js`).
pub const JS_HELPER: &str = include_str!("../sdk/js/tern-step.js");

/// The helper library the Python scaffold imports (`plugins/sdk/python/tern_step.py`).
pub const PY_HELPER: &str = include_str!("../sdk/python/tern_step.py");

/// The single-header helper library the C scaffold includes (`plugins/sdk/c/tern_step.h`).
pub const C_HELPER: &str = include_str!("../sdk/c/tern_step.h");

/// The world (`plugins/wit/step.wit`).
pub const WIT: &str = include_str!("../wit/step.wit");

/// The componentize-qjs version the scaffold pins (the one the examples are built and tested
/// with).
pub const COMPONENTIZE_QJS: &str = "0.4.5";

/// The componentize-py version the Python scaffold pins (the one the examples are built and
/// tested with; `scripts/test` installs the same).
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// A scaffold's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// JavaScript: `plugin.js` with `tern-step.js`, built by componentize-qjs from npm.
    JavaScript,
    /// Python: `plugin.py` with `tern_step.py`, built by componentize-py from PyPI.
    Python,
    /// C: `plugin.c` with `tern_step.h`, built by clang-19 and wasi-libc.
    C,
}

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

/// The test fixture every scaffold ships (`tern plugins test FILE --fixture fixture.json`): the
/// sample configuration and what it must set.
pub const FIXTURE: &str = r#"{
  "config": {"text": "hello", "save_as": "loud"},
  "variables": {},
  "http": [],
  "expect": {"variables": {"loud": "HELLO"}}
}
"#;

/// The files of a step plugin of step type `name` in `lang`: the step (it upper-cases a text,
/// written with the language's helper library), the helper library, `wit/step.wit`, the pinned
/// toolchain (`package.json`, `requirements.txt`), `fixture.json`, a `README.md` of three
/// commands (build, test, install) and `.gitignore`.
///
/// # Errors
/// [`ScaffoldError::BadName`].
pub fn files(name: &str, lang: Lang) -> Result<Vec<ScaffoldFile>, ScaffoldError> {
    // The loader's rule, and a name a person would write: no empty part (`acme..x`), no
    // trailing `.`, `-` or `_`.
    let tidy = !name.contains("..") && !name.ends_with(['.', '-', '_']);
    if !crate::valid_name(name) || !tidy {
        return Err(ScaffoldError::BadName { name: name.to_string() });
    }
    let folder = folder_name(name);
    let wasm = format!("{folder}.wasm");
    let file = |path: &str, text: String| ScaffoldFile { path: path.into(), text };
    let (mut out, language, build, notes) = match lang {
        Lang::JavaScript => (
            vec![
                file("plugin.js", javascript_step(name)),
                file("tern-step.js", JS_HELPER.to_string()),
                file("package.json", package_json(&folder, name, &wasm)),
                file(".gitignore", "node_modules/\n*.wasm\n".into()),
            ],
            "JavaScript",
            "npm install && tern plugins build .".to_string(),
            format!(
                "- `plugin.js` is the step; `tern-step.js` is Tern's helper library (parsed JSON in and out,\n  errors as values, `http.fetch` through an integration).\n- `npm install` needs Node.js and npm: it installs componentize-qjs {COMPONENTIZE_QJS}, which\n  `tern plugins build .` (or `npm run build`) uses."
            ),
        ),
        Lang::Python => (
            vec![
                file("plugin.py", python_step(name)),
                file("tern_step.py", PY_HELPER.to_string()),
                file("requirements.txt", format!("componentize-py=={COMPONENTIZE_PY}\n")),
                file(".gitignore", ".venv/\n__pycache__/\n*.wasm\n".into()),
            ],
            "Python",
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && tern plugins build .".to_string(),
            format!(
                "- `plugin.py` is the step; `tern_step.py` is Tern's helper library (parsed JSON in and out,\n  errors as values, `fetch` through an integration). The standard library is there; packages\n  with native code are not.\n- The virtual environment holds componentize-py {COMPONENTIZE_PY} (from PyPI), which\n  `tern plugins build .` uses; the component carries its own Python (about 19 MiB)."
            ),
        ),
        Lang::C => (
            vec![
                file("plugin.c", c_step(name)),
                file("tern_step.h", C_HELPER.to_string()),
                file(".gitignore", "*.wasm\n".into()),
            ],
            "C",
            "tern plugins build .".to_string(),
            "- `plugin.c` is the step; `tern_step.h` is Tern's helper library (reads the step's fields,\n  sets variables, errors as values).\n- The build needs Debian's clang-19, lld-19, wasi-libc and libclang-rt-19-dev-wasm32."
                .to_string(),
        ),
    };
    let readme = format!(
        r#"# {name}

A Tern step plugin in {language}. Build it, test it with its fixture, install it:

```sh
{build}
tern plugins test {wasm} --fixture fixture.json
tern plugins install {wasm}
```

Then use it in a flow: `{{"id": "shout", "type": "{name}", "text": "{{{{message.text}}}}", "save_as": "loud"}}`.

{notes}
- `fixture.json` gives the step's fields, the run's variables, recorded HTTP answers (`http`) and
  what the run must set (`expect`); `tern plugins test` exits non-zero when the run differs, so
  it can run in CI. Add a fixture per case (`--fixture other.json`).
- `wit/step.wit` is the world; a field the step's `config` does not list is reported as a typo
  by `tern validate`.
"#
    );
    out.push(file("wit/step.wit", WIT.to_string()));
    out.push(file("fixture.json", FIXTURE.to_string()));
    out.push(file("README.md", readme));
    Ok(out)
}

fn javascript_step(name: &str) -> String {
    format!(
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
    )
}

fn package_json(folder: &str, name: &str, wasm: &str) -> String {
    format!(
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
    )
}

fn python_step(name: &str) -> String {
    format!(
        r#"# {name}: upper-cases a text into a variable. Change `run` to do your step's work;
# `fetch(url, integration=...)` calls an API through an integration (see tern_step.py).
from tern_step import StepError, step


def run(config, variables, invocation):
    if not config["text"].strip():
        raise StepError("invalid-config", "the text is empty")
    return {{config["save_as"]: config["text"].upper()}}


WitWorld = step(
    name="{name}",
    version="0.1.0",
    description="Upper-cases a text into a variable",
    config={{
        "text": {{"type": "string", "description": "The text (placeholders allowed)."}},
        "save_as": {{"type": "string", "description": "The variable that receives the result."}},
    }},
    required=["text", "save_as"],
    run=run,
)
"#
    )
}

fn c_step(name: &str) -> String {
    format!(
        r#"// {name}: upper-cases a text into a variable. Change `tern_run` to do your step's work
// (see tern_step.h for what the helper library gives).
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define TERN_STEP_IMPLEMENTATION
#include "tern_step.h"

const tern_step_info TERN_STEP_INFO = {{
    .name = "{name}",
    .version = "0.1.0",
    .description = "Upper-cases a text into a variable",
    .config_schema =
        "{{\"type\":\"object\",\"required\":[\"text\",\"save_as\"],\"properties\":{{"
        "\"text\":{{\"type\":\"string\",\"description\":\"The text (placeholders allowed).\"}},"
        "\"save_as\":{{\"type\":\"string\",\"description\":\"The variable that receives the result.\"}}}}}}",
}};

int tern_run(tern_step *s) {{
  const char *text = tern_config(s, "text"), *save_as = tern_config(s, "save_as");
  if (!text || !save_as) return tern_fail(s, TERN_INVALID_CONFIG, "`text` and `save_as` must be strings");
  char *loud = strdup(text);
  if (!loud) return tern_fail(s, TERN_FATAL, "out of memory");
  for (char *p = loud; *p; p++) *p = (char)toupper((unsigned char)*p);
  tern_set(s, save_as, loud);
  free(loud);
  return TERN_OK;
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaffold_names_its_step_and_refuses_a_bad_name() {
        let Ok(files) = files("acme.hello", Lang::JavaScript) else { panic!("a good name") };
        let text = |p: &str| {
            files.iter().find(|f| f.path == std::path::Path::new(p)).map(|f| f.text.clone()).unwrap_or_default()
        };
        assert!(text("plugin.js").contains(r#"name: "acme.hello""#));
        assert!(text("package.json").contains("-o acme-hello.wasm") && text("package.json").contains("\"0.4.5\""));
        assert!(text("README.md").contains("tern plugins test acme-hello.wasm --fixture fixture.json"));
        assert_eq!(text("fixture.json"), FIXTURE);
        for lang in [Lang::JavaScript, Lang::Python, Lang::C] {
            for bad in ["Acme Hello", "acme..hello", "acme-", "acme."] {
                assert!(matches!(super::files(bad, lang), Err(ScaffoldError::BadName { .. })), "{bad}");
            }
        }
        let Ok(py) = super::files("acme.hello", Lang::Python) else { panic!("a good name") };
        assert!(
            py.iter().any(|f| f.path == std::path::Path::new("requirements.txt") && f.text.contains(COMPONENTIZE_PY))
        );
    }
}
