//! Named secrets for `{{secrets.NAME}}`, and masking of every secret value the process knows
//! wherever text leaves it (see [`known`]).

pub mod known;

use std::borrow::Cow;
use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};

/// The secret name rule as a regular expression (OpenAPI): ASCII letters, digits and `_`, not
/// starting with a digit, at most 64 characters, so that `TERN_SECRET_NAME` is an environment
/// variable name. [`check_secret_name`] is the same rule in code.
pub const SECRET_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]{0,63}$";

/// A name that breaks [`SECRET_NAME_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a secret name (letters, digits and `_`, not starting with a digit, at most 64 characters)")]
pub struct BadSecretName {
    /// The name given.
    pub name: String,
}

/// Checks a secret name against [`SECRET_NAME_PATTERN`] (the admin API and `tern secrets`).
///
/// # Errors
/// [`BadSecretName`]: the name and the rule, in words.
pub fn check_secret_name(name: &str) -> Result<(), BadSecretName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok { Ok(()) } else { Err(BadSecretName { name: name.to_string() }) }
}

/// Where `{{secrets.NAME}}` values come from.
pub trait SecretSource: Send + Sync {
    /// The secret called `name`, if there is one.
    fn get(&self, name: &str) -> Option<SecretString>;

    /// Whether a secret called `name` is stored but does not decrypt (a wrong master key, a
    /// modified row), so that a missing value is diagnosed as that ([`unreadable_secret`])
    /// rather than as "not set".
    fn undecryptable(&self, name: &str) -> bool {
        let _ = name;
        false
    }
}

/// The diagnosis of a stored secret `name` that does not decrypt, with what to do.
pub fn unreadable_secret(name: &str) -> String {
    format!(
        "the stored secret `{name}` does not decrypt with the loaded master key (the key it was stored with is not loaded, or the row was modified): load that key again (TERN_MASTER_KEY, or TERN_MASTER_KEY_PREVIOUS during `tern keys rotate`), or set the secret again with `tern secrets set {name}`"
    )
}

/// Why a run has no value for `{{secrets.NAME}}`, with what to do.
pub fn missing_secret(source: &dyn SecretSource, name: &str) -> String {
    if source.undecryptable(name) {
        unreadable_secret(name)
    } else {
        format!("no secret `{name}`; set it with `tern secrets set {name}` or TERN_SECRET_{name}")
    }
}

/// Secrets from the environment: `{{secrets.API_KEY}}` reads `TERN_SECRET_API_KEY`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvSecrets;

impl SecretSource for EnvSecrets {
    fn get(&self, name: &str) -> Option<SecretString> {
        let value = std::env::var(format!("TERN_SECRET_{name}")).ok().map(SecretString::from)?;
        known::remember(&value);
        Some(value)
    }
}

/// No secrets at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn get(&self, _: &str) -> Option<SecretString> {
        None
    }
}

/// Shortest value a [`Masker`] masks in a run's results, in characters.
pub const MIN_MASKED_CHARS: usize = 4;

/// Replaces secret values with `[redacted]` in text bound for logs, errors, replies and history:
/// the values it was made with (a run's `{{secrets.*}}`) and every value in the process-wide
/// registry ([`known`]: tokens, client secrets, verifiers, static keys, the admin token).
///
/// Values the run's input carries (what the contact wrote, the contact's fields, an event) are
/// left as they are ([`Masker::sent_by_caller`]): a flow that echoes its input would otherwise
/// answer `[redacted]` exactly when a caller guessed a secret. The caller learns nothing from
/// its own input.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    values: Vec<SecretString>,
    /// Registered values the run's input carries (see [`known::present_in`]).
    keep: std::sync::Arc<Vec<Vec<u8>>>,
}

impl Masker {
    /// A masker for these secrets, which are also registered process-wide (values shorter than
    /// [`MIN_MASKED_CHARS`] characters are not masked: they would mangle ordinary text and are
    /// not secrets worth the name).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        let given: Vec<&SecretString> =
            secrets.into_iter().filter(|s| s.expose_secret().chars().count() >= MIN_MASKED_CHARS).collect();
        given.iter().for_each(|s| known::remember(s));
        // Each value in every form it travels in (encoded in a URL or form, escaped in JSON), so
        // a short value's encoded forms are masked too (the registry takes 8 characters or more).
        let mut values: Vec<SecretString> = Vec::new();
        for form in given.iter().flat_map(|s| known::forms(s.expose_secret())) {
            if form.chars().count() >= MIN_MASKED_CHARS && !values.iter().any(|v| v.expose_secret() == form) {
                values.push(SecretString::from(form));
            }
        }
        // Longer values first, so a secret that contains another is masked whole.
        values.sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
        Self { values, keep: std::sync::Arc::default() }
    }

    /// This masker, leaving as they are the secret values that occur in `input` (the run's
    /// input as the caller sent it).
    pub fn sent_by_caller(mut self, input: &[u8]) -> Self {
        let mut keep = known::present_in(input);
        for v in &self.values {
            let bytes = v.expose_secret().as_bytes();
            if !bytes.is_empty() && input.windows(bytes.len()).any(|w| w == bytes) && !keep.iter().any(|k| k == bytes) {
                keep.push(bytes.to_vec());
            }
        }
        self.keep = std::sync::Arc::new(keep);
        self
    }

    /// `text` with every known secret value replaced.
    pub fn mask(&self, text: &str) -> String {
        self.masked(text).into_owned()
    }

    /// [`mask`](Self::mask), borrowed (no copy) when there was nothing to mask: most text.
    pub fn masked<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = match known::mask_bytes_except(text.as_bytes(), &self.keep) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(m) => {
                Cow::Owned(String::from_utf8(m).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
            }
        };
        // The run's own values, in case the bounded registry has since forgotten them.
        for v in &self.values {
            let value = v.expose_secret();
            if out.contains(value) && !self.keep.iter().any(|k| k.as_slice() == value.as_bytes()) {
                out = Cow::Owned(out.replace(value, known::REDACTED));
            }
        }
        out
    }

    /// Masks every string inside a JSON value (a string is replaced only when something in it
    /// was masked).
    pub fn mask_value(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(m) = self.masked(s) {
                    *s = m;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.mask_value(v)),
            _ => {}
        }
    }
}

/// Stored secrets first, then the environment. The server updates the stored layer when the
/// admin API sets or removes a secret.
pub struct LayeredSecrets {
    stored: std::sync::RwLock<std::collections::HashMap<String, SecretString>>,
    /// Stored secrets that do not decrypt (their names only).
    undecryptable: std::sync::RwLock<std::collections::BTreeSet<String>>,
}

impl LayeredSecrets {
    /// The stored layer, as read from the store. Every `TERN_SECRET_*` value is registered for
    /// masking now, also one a stored secret of the same name hides (it is still a secret).
    pub fn new(stored: impl IntoIterator<Item = (String, SecretString)>) -> Self {
        for (k, v) in std::env::vars() {
            if k.starts_with("TERN_SECRET_") {
                known::remember_str(&v);
            }
        }
        Self { stored: std::sync::RwLock::new(stored.into_iter().collect()), undecryptable: Default::default() }
    }

    /// Records which stored secrets do not decrypt (all of them, replacing the previous list):
    /// a flow that uses one fails saying so ([`unreadable_secret`]).
    pub fn set_undecryptable(&self, names: impl IntoIterator<Item = String>) {
        *self.undecryptable.write().unwrap_or_else(|p| p.into_inner()) = names.into_iter().collect();
    }

    /// Replaces the whole stored layer with what the store holds now (the server re-reads it
    /// periodically, so secrets set with `tern secrets set` reach a running server).
    pub fn replace_stored(&self, stored: impl IntoIterator<Item = (String, SecretString)>) {
        let fresh: HashMap<String, SecretString> = stored.into_iter().collect();
        fresh.values().for_each(known::remember);
        *self.stored.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// Sets (`Some`) or removes (`None`) a stored secret in memory; the store is written by the
    /// caller.
    pub fn update(&self, name: &str, value: Option<SecretString>) {
        if let Some(v) = &value {
            known::remember(v);
        }
        self.undecryptable.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        let mut stored = self.stored.write().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(v) => stored.insert(name.to_string(), v),
            None => stored.remove(name),
        };
    }
}

impl SecretSource for LayeredSecrets {
    fn get(&self, name: &str) -> Option<SecretString> {
        let stored = self.stored.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        stored.or_else(|| EnvSecrets.get(name))
    }

    fn undecryptable(&self, name: &str) -> bool {
        self.undecryptable.read().unwrap_or_else(|p| p.into_inner()).contains(name)
    }
}

/// The secrets a run uses, fetched once when the run starts.
pub type SecretMap = HashMap<String, SecretString>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_s_secret_is_masked_in_every_form_it_travels_in() {
        // Short (under the registry's 8 characters), with a space and a slash.
        let m = Masker::new([&SecretString::from("pa s/1")]);
        let text = "form a=pa+s%2F1, url pa%20s%2F1, json \"pa s\\/1\", raw pa s/1";
        let masked = m.mask(text);
        assert_eq!(masked.matches(known::REDACTED).count(), 4, "{masked}");
        assert!(!masked.contains("pa"), "{masked}");
    }

    #[test]
    fn masks_known_values_and_never_prints() {
        let s = SecretString::from("hunter2-long");
        assert!(!format!("{s:?}").contains("hunter2"));
        let m = Masker::new([&s, &SecretString::from("ab")]);
        assert_eq!(m.mask("pw=hunter2-long ab"), "pw=[redacted] ab");
        // Registered process-wide too: a masker that never saw it masks it.
        assert_eq!(Masker::default().mask("pw=hunter2-long"), "pw=[redacted]");
        let mut v = serde_json::json!({"a": ["x hunter2-long"]});
        m.mask_value(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["x [redacted]"]}));
    }

    #[test]
    fn what_the_caller_sent_stays_as_it_is_in_the_run_s_output() {
        let own = SecretString::from("run-secret-value-11");
        known::remember_str("registry-secret-value-22");
        let m = Masker::new([&own]).sent_by_caller(b"hi run-secret-value-11 and registry-secret-value-22");
        assert_eq!(
            m.mask("echo: run-secret-value-11 registry-secret-value-22"),
            "echo: run-secret-value-11 registry-secret-value-22"
        );
        let other = Masker::new([&own]).sent_by_caller(b"hi");
        assert_eq!(other.mask("run-secret-value-11 registry-secret-value-22"), "[redacted] [redacted]");
    }
}
