//! A string that never shows itself in `Debug` or `Display`.

use serde::{Deserialize, Deserializer};

/// Secret material from the apimodel or the command line (client secrets,
/// private keys, passwords). `Debug` prints `Secret(<redacted>)` and there is no
/// `Display`: the only way to the value is [`Secret::expose`], which makes every
/// use greppable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Call only to hand it to the party that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Accept null as empty: deploy writes `"secret": ""` but hand edits vary.
        let value = Option::<String>::deserialize(deserializer)?;
        Ok(Self(value.unwrap_or_default()))
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}
