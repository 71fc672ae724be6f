//! Hand-written plugins: core modules in WAT that implement the `tern:step` world's canonical
//! ABI directly, turned into components with `wit-component` (no guest toolchain). Each
//! [`Plugin`] differs in its `run` body; the rest (a bump allocator, `describe`, the strings)
//! is shared.

use std::fmt::Write as _;

/// The world's WIT as shipped.
pub fn wit() -> String {
    std::fs::read_to_string(super::repo().join("plugins/wit/step.wit")).expect("plugins/wit/step.wit")
}

/// Where `describe` and `run` write their results, and where `http-fetch` answers.
const DESCRIBE_AT: u32 = 8192;
const RESULT_AT: u32 = 8256;
const FETCH_AT: u32 = 8320;
const HEADERS_AT: u32 = 8448;

/// A plugin built from WAT.
pub struct Plugin {
    /// The world's WIT (a test may change it: another version, an extra import).
    pub wit: String,
    /// The host interface version the module imports from.
    pub version: &'static str,
    /// Extra imports of the core module (matching extra imports in `wit`).
    pub extra_imports: String,
    /// The body of `run` (must leave an i32 result pointer on the stack).
    pub run: String,
    /// The step type name `describe` returns.
    pub name: String,
    /// Strings the body refers to, by name → (pointer, length).
    strings: Vec<(String, String)>,
}

impl Plugin {
    /// A plugin of step type `wat.test` whose `run` is `body`.
    pub fn new(body: &str) -> Self {
        Self {
            wit: wit(),
            version: "0.1.0",
            extra_imports: String::new(),
            run: body.to_string(),
            name: "wat.test".into(),
            strings: Vec::new(),
        }
    }

    /// Adds a string constant, or replaces a default one (`schema`: the config schema); its
    /// pointer and length are `$NAME_ptr`/`$NAME_len` globals.
    pub fn string(mut self, name: &str, value: &str) -> Self {
        self.strings.push((name.to_string(), value.to_string()));
        self
    }

    /// The component.
    pub fn build(&self) -> Vec<u8> {
        let mut strings = vec![
            ("name".to_string(), self.name.clone()),
            ("get".to_string(), "GET".to_string()),
            ("post".to_string(), "POST".to_string()),
            ("version".to_string(), "0.0.1".to_string()),
            ("description".to_string(), "a hand-written test plugin".to_string()),
            ("schema".to_string(), r#"{"type":"object"}"#.to_string()),
            ("output".to_string(), r#"{"type":"object","properties":{"greeting":{"type":"string"}}}"#.to_string()),
            ("vars".to_string(), r#"{"greeting":"hi"}"#.to_string()),
            ("first".to_string(), "first".to_string()),
            ("again".to_string(), "again".to_string()),
            ("ok".to_string(), "ok".to_string()),
        ];
        // A string of the same name replaces the default (`schema`, `output`, …).
        for (name, value) in &self.strings {
            match strings.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1.clone_from(value),
                None => strings.push((name.clone(), value.clone())),
            }
        }
        let mut data = String::new();
        let mut globals = String::new();
        let mut at = 16u32;
        for (name, value) in &strings {
            let escaped: String = value.bytes().map(|b| format!("\\{b:02x}")).collect();
            let _ = writeln!(data, "  (data (i32.const {at}) \"{escaped}\")");
            let _ = writeln!(globals, "  (global ${name}_ptr i32 (i32.const {at}))");
            let _ = writeln!(globals, "  (global ${name}_len i32 (i32.const {}))", value.len());
            at += u32::try_from(value.len()).unwrap() + 8;
            assert!(at < DESCRIBE_AT, "test strings too long");
        }
        let v = self.version;
        let extra = &self.extra_imports;
        let run = &self.run;
        let wat = format!(
            r#"(module
  (import "tern:step/host@{v}" "log" (func $log (param i32 i32 i32)))
  (import "tern:step/host@{v}" "http-fetch" (func $fetch (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
{extra}
  (memory (export "memory") 40)
  (global $heap (mut i32) (i32.const 65536))
  (global $count (mut i32) (i32.const 0))
{globals}
{data}
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func (export "describe") (result i32)
    (i32.store (i32.const {DESCRIBE_AT}) (global.get $name_ptr))
    (i32.store (i32.const {d4}) (global.get $name_len))
    (i32.store (i32.const {d8}) (global.get $version_ptr))
    (i32.store (i32.const {d12}) (global.get $version_len))
    (i32.store (i32.const {d16}) (global.get $description_ptr))
    (i32.store (i32.const {d20}) (global.get $description_len))
    (i32.store (i32.const {d24}) (global.get $schema_ptr))
    (i32.store (i32.const {d28}) (global.get $schema_len))
    (i32.store8 (i32.const {d32}) (i32.const 1))
    (i32.store (i32.const {d36}) (global.get $output_ptr))
    (i32.store (i32.const {d40}) (global.get $output_len))
    (i32.const {DESCRIBE_AT}))
  ;; ok(variables, outcome): result<output, step-error> with `some(outcome)`.
  (func $ok (param $vp i32) (param $vl i32) (param $op i32) (param $ol i32) (result i32)
    (i32.store8 (i32.const {RESULT_AT}) (i32.const 0))
    (i32.store (i32.const {r4}) (local.get $vp))
    (i32.store (i32.const {r8}) (local.get $vl))
    (i32.store8 (i32.const {r12}) (i32.const 1))
    (i32.store (i32.const {r16}) (local.get $op))
    (i32.store (i32.const {r20}) (local.get $ol))
    (i32.const {RESULT_AT}))
  ;; Calls http-fetch with GET `url`, the headers at {HEADERS_AT} (count), and the
  ;; integration if its length is not 0; returns `ok` or the error's message as the outcome.
  (func $get (param $up i32) (param $ul i32) (param $hn i32) (param $ip i32) (param $il i32) (result i32)
    (call $fetch
      (global.get $get_ptr) (global.get $get_len)
      (local.get $up) (local.get $ul)
      (i32.const {HEADERS_AT}) (local.get $hn)
      (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.ne (local.get $il) (i32.const 0)) (local.get $ip) (local.get $il)
      (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0)
      (i32.const {FETCH_AT}))
    (if (result i32) (i32.eqz (i32.load8_u (i32.const {FETCH_AT})))
      (then (call $ok (global.get $vars_ptr) (global.get $vars_len) (global.get $ok_ptr) (global.get $ok_len)))
      (else (call $ok (global.get $vars_ptr) (global.get $vars_len)
        (i32.load (i32.const {f8})) (i32.load (i32.const {f12}))))))
  ;; Calls http-fetch with POST `url`, no headers and no body; leaves the result at
  ;; {FETCH_AT} and returns 0 when the call succeeded.
  (func $post (param $up i32) (param $ul i32) (result i32)
    (call $fetch
      (global.get $post_ptr) (global.get $post_len)
      (local.get $up) (local.get $ul)
      (i32.const {HEADERS_AT}) (i32.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0)
      (i32.const {FETCH_AT}))
    (i32.load8_u (i32.const {FETCH_AT})))
  ;; The last call's result at {FETCH_AT} as the step's result: its body as the variables with
  ;; outcome `ok`, or `{{"greeting":"hi"}}` with the error's message as the outcome.
  (func $answer (result i32)
    (if (result i32) (i32.eqz (i32.load8_u (i32.const {FETCH_AT})))
      (then (call $ok (i32.load (i32.const {f16})) (i32.load (i32.const {f20})) (global.get $ok_ptr) (global.get $ok_len)))
      (else (call $ok (global.get $vars_ptr) (global.get $vars_len)
        (i32.load (i32.const {f8})) (i32.load (i32.const {f12}))))))
  (func (export "run") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32) (result i32)
{run})
)"#,
            d4 = DESCRIBE_AT + 4,
            d8 = DESCRIBE_AT + 8,
            d12 = DESCRIBE_AT + 12,
            d16 = DESCRIBE_AT + 16,
            d20 = DESCRIBE_AT + 20,
            d24 = DESCRIBE_AT + 24,
            d28 = DESCRIBE_AT + 28,
            d32 = DESCRIBE_AT + 32,
            d36 = DESCRIBE_AT + 36,
            d40 = DESCRIBE_AT + 40,
            r4 = RESULT_AT + 4,
            r8 = RESULT_AT + 8,
            r12 = RESULT_AT + 12,
            r16 = RESULT_AT + 16,
            r20 = RESULT_AT + 20,
            f8 = FETCH_AT + 8,
            f12 = FETCH_AT + 12,
            f16 = FETCH_AT + 16,
            f20 = FETCH_AT + 20,
        );
        let mut module = wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"));
        let mut resolve = wit_parser::Resolve::default();
        let package = resolve.push_str("step.wit", &self.wit).expect("the test WIT parses");
        let world = resolve.select_world(&[package], Some("step")).expect("world `step`");
        wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
            .expect("metadata");
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(&module)
            .expect("module")
            .encode()
            .expect("component")
    }
}

/// A `run` body that returns `{"greeting":"hi"}` with outcome `first` on an instance's first
/// call and `again` after (a reused instance would say `again`).
pub const FIRST_CALL: &str = r#"
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (if (result i32) (i32.eq (global.get $count) (i32.const 1))
      (then (call $ok (global.get $vars_ptr) (global.get $vars_len) (global.get $first_ptr) (global.get $first_len)))
      (else (call $ok (global.get $vars_ptr) (global.get $vars_len) (global.get $again_ptr) (global.get $again_len))))"#;

/// A `run` body that POSTs to the string `url` twice (stopping at a failed call) and returns
/// the last call's result: its body as the variables (a JSON object) with outcome `ok`, or the
/// error's message as the outcome.
pub const POST_TWICE: &str = r#"
    (if (result i32) (call $post (global.get $url_ptr) (global.get $url_len))
      (then (call $answer))
      (else (drop (call $post (global.get $url_ptr) (global.get $url_len))) (call $answer)))"#;

/// Writes one header (name, value strings) into the header list `http-fetch` reads.
pub fn header_store(index: u32, name: &str, value: &str) -> String {
    let at = HEADERS_AT + index * 16;
    format!(
        "(i32.store (i32.const {at}) (global.get ${name}_ptr)) (i32.store (i32.const {}) (global.get ${name}_len))
         (i32.store (i32.const {}) (global.get ${value}_ptr)) (i32.store (i32.const {}) (global.get ${value}_len))",
        at + 4,
        at + 8,
        at + 12
    )
}
