//! The subscription fallback from the Azure CLI's configuration, as aks-engine does it:
//! the active cloud is `[cloud] name` in `<dir>/config` (default `AzureCloud`), and its
//! subscription is `[<cloud>] subscription` in `<dir>/clouds.config`.

use std::path::{Path, PathBuf};

use super::{Error, Result};

/// The Azure CLI configuration directory: `AZURE_CONFIG_DIR` when set, else `<home>/.azure`.
/// `env` reads an environment variable (pass `|name| std::env::var(name).ok()`).
pub fn azure_cli_config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("AZURE_CONFIG_DIR").filter(|dir| !dir.trim().is_empty()) {
        return Some(PathBuf::from(dir));
    }
    env("HOME")
        .or_else(|| env("USERPROFILE"))
        .filter(|home| !home.trim().is_empty())
        .map(|home| Path::new(&home).join(".azure"))
}

/// The default subscription of the Azure CLI's active cloud, read from `dir`
/// (usually `~/.azure`). `Ok(None)` when the files or the keys are absent.
pub fn subscription_from_azure_cli(dir: &Path) -> Result<Option<String>> {
    let cloud = match read_optional(&dir.join("config"))? {
        Some(text) => ini_value(&text, "cloud", "name").unwrap_or_else(|| "AzureCloud".to_owned()),
        None => "AzureCloud".to_owned(),
    };
    let Some(clouds) = read_optional(&dir.join("clouds.config"))? else {
        return Ok(None);
    };
    Ok(ini_value(&clouds, &cloud, "subscription").filter(|value| !value.is_empty()))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadFile {
            what: "the Azure CLI configuration",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The value of `key` in `[section]` of an INI text (case-insensitive names,
/// `=` or `:` separators, `#`/`;` comments).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            in_section = name.trim().eq_ignore_ascii_case(section);
            continue;
        }
        if !in_section {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            continue;
        };
        let (name, value) = line.split_at(split);
        if name.trim().eq_ignore_ascii_case(key) {
            return Some(value[1..].trim().to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_active_clouds_subscription() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join(".azure");
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert_eq!(subscription_from_azure_cli(&dir).expect("read"), None);

        std::fs::write(
            dir.join("clouds.config"),
            "[AzureCloud]\nsubscription = 11111111-1111-1111-1111-111111111111\n\n[AzureStackUser]\n# comment\nsubscription=22222222-2222-2222-2222-222222222222\nprofile = 2020-09-01-hybrid\n",
        )
        .expect("write");
        // No config file: AzureCloud.
        assert_eq!(
            subscription_from_azure_cli(&dir).expect("read").as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
        std::fs::write(
            dir.join("config"),
            "[core]\noutput = json\n[cloud]\nname = AzureStackUser\n",
        )
        .expect("write");
        assert_eq!(
            subscription_from_azure_cli(&dir).expect("read").as_deref(),
            Some("22222222-2222-2222-2222-222222222222")
        );
        std::fs::write(dir.join("config"), "[cloud]\nname = Elsewhere\n").expect("write");
        assert_eq!(subscription_from_azure_cli(&dir).expect("read"), None);
    }

    #[test]
    fn config_dir_prefers_azure_config_dir() {
        let env = |name: &str| match name {
            "HOME" => Some("/home/u".to_owned()),
            "AZURE_CONFIG_DIR" => Some("/etc/az".to_owned()),
            _ => None,
        };
        assert_eq!(azure_cli_config_dir(&env), Some(PathBuf::from("/etc/az")));
        let env = |name: &str| (name == "HOME").then(|| "/home/u".to_owned());
        assert_eq!(
            azure_cli_config_dir(&env),
            Some(PathBuf::from("/home/u/.azure"))
        );
        assert_eq!(azure_cli_config_dir(&|_| None), None);
    }
}
