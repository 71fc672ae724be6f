//! Named secrets for `{{secrets.NAME}}`, and masking of their values wherever run output goes.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};

/// Where `{{secrets.NAME}}` values come from.
pub trait SecretSource: Send + Sync {
    /// The secret called `name`, if there is one.
    fn get(&self, name: &str) -> Option<SecretString>;
}

/// Secrets from the environment: `{{secrets.API_KEY}}` reads `TERN_SECRET_API_KEY`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvSecrets;

impl SecretSource for EnvSecrets {
    fn get(&self, name: &str) -> Option<SecretString> {
        std::env::var(format!("TERN_SECRET_{name}")).ok().map(SecretString::from)
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

/// Replaces known secret values with `[redacted]` in text bound for logs, errors and history.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    values: Vec<SecretString>,
}

impl Masker {
    /// A masker for these secrets (values shorter than 4 characters are not masked: they would
    /// mangle ordinary text and are not secrets worth the name).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        let mut values: Vec<SecretString> =
            secrets.into_iter().filter(|s| s.expose_secret().len() >= 4).cloned().collect();
        // Longer values first, so a secret that contains another is masked whole.
        values.sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
        Self { values }
    }

    /// `text` with every known secret value replaced.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.expose_secret()) {
                out = out.replace(v.expose_secret(), "[redacted]");
            }
        }
        out
    }

    /// Masks every string inside a JSON value.
    pub fn mask_value(&self, value: &mut serde_json::Value) {
        if self.values.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => *s = self.mask(s),
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
}

impl LayeredSecrets {
    /// The stored layer, as read from the store.
    pub fn new(stored: impl IntoIterator<Item = (String, SecretString)>) -> Self {
        Self { stored: std::sync::RwLock::new(stored.into_iter().collect()) }
    }

    /// Sets (`Some`) or removes (`None`) a stored secret in memory; the store is written by the
    /// caller.
    pub fn update(&self, name: &str, value: Option<SecretString>) {
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
}

/// The secrets a run uses, fetched once when the run starts.
pub type SecretMap = HashMap<String, SecretString>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_known_values_and_never_prints() {
        let s = SecretString::from("hunter2-long");
        assert!(!format!("{s:?}").contains("hunter2"));
        let m = Masker::new([&s, &SecretString::from("ab")]);
        assert_eq!(m.mask("pw=hunter2-long ab"), "pw=[redacted] ab");
        let mut v = serde_json::json!({"a": ["x hunter2-long"]});
        m.mask_value(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["x [redacted]"]}));
    }
}
