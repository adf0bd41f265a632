//! Supported Kubernetes versions and upgrade paths, as aks-engine-azurestack
//! v0.85.0 computes them.
//!
//! The tables are embedded data (`data/versions-v0.85.0.json`). Every rule here
//! follows the tool we replace, so that `aksup get-versions` answers byte for
//! byte like `aks-engine-azurestack get-versions`:
//!
//! * a table entry is *creatable* (`true`, may be an upgrade target) or only
//!   *known* (`false`, accepted as a cluster's current version);
//! * the public Windows table is the public Linux table without a few early
//!   releases, with 1.8.12 creatable;
//! * upgrade targets of `current` are the creatable versions above it and below
//!   a bound: the minor after the next (`major.minor+2.0-alpha.0`), or, when the
//!   next minor is missing, the minor after the nearest supported one.

use std::cmp::Ordering;
use std::sync::OnceLock;

use indexmap::IndexMap;
use semver::Version;

/// The release whose newest creatable patch is the default version.
const DEFAULT_RELEASE: (u64, u64) = (1, 33);

/// Versions the public Windows table leaves out of the public Linux one.
const PUBLIC_WINDOWS_EXCLUDED: [&str; 15] = [
    "1.6.6",
    "1.6.9",
    "1.6.11",
    "1.6.12",
    "1.6.13",
    "1.7.0",
    "1.7.1",
    "1.8.13",
    "1.8.14",
    "1.8.15",
    "1.10.0-beta.2",
    "1.10.0-beta.4",
    "1.10.0-rc.1",
    "1.11.0-alpha.1",
    "1.11.0-alpha.2",
];

/// The version the public Windows table forces to creatable.
const PUBLIC_WINDOWS_FORCED: &str = "1.8.12";

static TABLES_JSON: &str = include_str!("../data/versions-v0.85.0.json");

/// Errors of version queries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The exact string is not in the chosen cloud's Linux table (aks-engine's message).
    #[error("Kubernetes version {0} is not supported")]
    NotSupported(String),
    /// Not a semantic version (`1.33.10`, no `v` prefix).
    #[error("{0} is not a valid semantic version (expected MAJOR.MINOR.PATCH, for example 1.34.4)")]
    NotSemver(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which cloud's tables apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    AzurePublic,
    AzureStack,
}

impl Cloud {
    /// aks-engine's rule: `AzureStackCloud` (any case) is Azure Stack; any other
    /// value means the public tables.
    pub fn from_azure_env(azure_env: &str) -> Self {
        if azure_env.eq_ignore_ascii_case("AzureStackCloud") {
            Cloud::AzureStack
        } else {
            Cloud::AzurePublic
        }
    }
}

/// One version of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub text: String,
    pub version: Version,
    pub creatable: bool,
}

/// A version table, sorted ascending by semver (a pre-release before its release).
#[derive(Debug, Clone)]
pub struct Table {
    entries: Vec<Entry>,
}

impl Table {
    fn from_map(map: &IndexMap<String, bool>) -> Self {
        let mut entries: Vec<Entry> = map
            .iter()
            .map(|(text, creatable)| Entry {
                version: Version::parse(text)
                    .expect("embedded version tables hold semantic versions"),
                text: text.clone(),
                creatable: *creatable,
            })
            .collect();
        entries.sort_by(|a, b| a.version.cmp(&b.version));
        Self { entries }
    }

    /// Every entry, ascending.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The creatable entries, ascending.
    pub fn creatable(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|entry| entry.creatable)
    }

    /// True when `text` is in the table (exact string match, as aks-engine).
    pub fn contains(&self, text: &str) -> bool {
        self.entries.iter().any(|entry| entry.text == text)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

struct Tables {
    azure_stack_linux: Table,
    azure_stack_windows: Table,
    public_linux: Table,
    public_windows: Table,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            azure_stack_linux: IndexMap<String, bool>,
            azure_stack_windows: IndexMap<String, bool>,
            public_linux: IndexMap<String, bool>,
        }
        let raw: Raw =
            serde_json::from_str(TABLES_JSON).expect("embedded version tables are valid JSON");
        let mut public_windows = raw.public_linux.clone();
        for excluded in PUBLIC_WINDOWS_EXCLUDED {
            public_windows.shift_remove(excluded);
        }
        public_windows.insert(PUBLIC_WINDOWS_FORCED.to_owned(), true);
        Tables {
            azure_stack_linux: Table::from_map(&raw.azure_stack_linux),
            azure_stack_windows: Table::from_map(&raw.azure_stack_windows),
            public_linux: Table::from_map(&raw.public_linux),
            public_windows: Table::from_map(&public_windows),
        }
    })
}

/// The table for a cloud and OS: Azure Stack + Windows pool → Azure Stack
/// Windows; Azure Stack → Azure Stack Linux; public + Windows → public Windows;
/// else public Linux.
pub fn table(cloud: Cloud, windows: bool) -> &'static Table {
    let tables = tables();
    match (cloud, windows) {
        (Cloud::AzureStack, true) => &tables.azure_stack_windows,
        (Cloud::AzureStack, false) => &tables.azure_stack_linux,
        (Cloud::AzurePublic, true) => &tables.public_windows,
        (Cloud::AzurePublic, false) => &tables.public_linux,
    }
}

/// True when `version` is known (creatable or deprecated) for the cloud. Like
/// aks-engine, this checks the cloud's *Linux* table, even for Windows clusters.
pub fn is_supported(version: &str, cloud: Cloud) -> bool {
    table(cloud, false).contains(version)
}

/// The default version: the newest creatable patch of the default release.
pub fn default_version(cloud: Cloud, windows: bool) -> Option<&'static str> {
    table(cloud, windows)
        .creatable()
        .filter(|entry| (entry.version.major, entry.version.minor) == DEFAULT_RELEASE)
        .max_by(|a, b| a.version.cmp(&b.version))
        .map(|entry| entry.text.as_str())
}

/// Parses a version the way aks-engine's semver library does (strict, no `v`).
pub fn parse(text: &str) -> Result<Version> {
    Version::parse(text).map_err(|_| Error::NotSemver(text.to_owned()))
}

/// The upgrade targets of `current` within the creatable versions of `table`,
/// ascending (reference §1 of the aks-engine notes).
pub fn upgrade_targets(current: &str, table: &Table) -> Result<Vec<String>> {
    let current = parse(current)?;
    let greater: Vec<&Entry> = table
        .creatable()
        .filter(|entry| entry.version > current)
        .collect();
    let Some(min) = greater.iter().map(|entry| &entry.version).min() else {
        return Ok(Vec::new());
    };
    let bound = if current.major >= min.major && current.minor + 1 < min.minor {
        alpha_zero(min.major, min.minor + 1)
    } else {
        alpha_zero(current.major, current.minor + 2)
    };
    Ok(greater
        .into_iter()
        .filter(|entry| entry.version.cmp(&bound) == Ordering::Less)
        .map(|entry| entry.text.clone())
        .collect())
}

fn alpha_zero(major: u64, minor: u64) -> Version {
    Version::parse(&format!("{major}.{minor}.0-alpha.0")).expect("a constructed version parses")
}

/// One row of `get-versions`: a version, whether it is the default, its upgrades.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionProfile {
    pub version: String,
    pub is_default: bool,
    pub upgrades: Vec<String>,
}

/// What `get-versions` lists: every creatable version of the table (ascending),
/// or only `version` when given (which must be in the cloud's Linux table).
pub fn version_profiles(
    version: Option<&str>,
    windows: bool,
    cloud: Cloud,
) -> Result<Vec<VersionProfile>> {
    let chosen = table(cloud, windows);
    let default = default_version(cloud, windows);
    let profile = |text: &str| -> Result<VersionProfile> {
        Ok(VersionProfile {
            version: text.to_owned(),
            is_default: Some(text) == default,
            upgrades: upgrade_targets(text, chosen)?,
        })
    };
    match version.filter(|text| !text.is_empty()) {
        None => chosen
            .creatable()
            .map(|entry| profile(&entry.text))
            .collect(),
        Some(text) => {
            if !is_supported(text, cloud) {
                return Err(Error::NotSupported(text.to_owned()));
            }
            Ok(vec![profile(text)?])
        }
    }
}

/// A path that crosses more than one minor release in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkewWarning {
    pub from: Version,
    pub to: Version,
    pub minors: u64,
}

impl std::fmt::Display for SkewWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "upgrading from {} to {} skips {} minor release(s): Kubernetes supports one minor at a time \
             (kubelets may lag the API server, not lead it); consider upgrading through {}.{} first",
            self.from,
            self.to,
            self.minors - 1,
            self.from.major,
            self.from.minor + 1
        )
    }
}

/// Reports when `from → to` jumps more than one minor release (aks-engine's
/// nearest-minor rule allows 1.31 → 1.33; aksup keeps the rule and warns).
pub fn skew(from: &Version, to: &Version) -> Option<SkewWarning> {
    if to.major != from.major || to.minor <= from.minor + 1 {
        return None;
    }
    Some(SkewWarning {
        from: from.clone(),
        to: to.clone(),
        minors: to.minor - from.minor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(current: &str, cloud: Cloud, windows: bool) -> Vec<String> {
        upgrade_targets(current, table(cloud, windows)).unwrap()
    }

    #[test]
    fn tables_have_the_documented_sizes() {
        assert_eq!(table(Cloud::AzureStack, false).len(), 61);
        assert_eq!(table(Cloud::AzureStack, true).len(), 57);
        assert_eq!(table(Cloud::AzurePublic, false).len(), 361);
        assert_eq!(table(Cloud::AzurePublic, true).len(), 361 - 15);
    }

    #[test]
    fn public_windows_drops_early_releases_and_forces_1_8_12() {
        let windows = table(Cloud::AzurePublic, true);
        for excluded in PUBLIC_WINDOWS_EXCLUDED {
            assert!(!windows.contains(excluded), "{excluded} must be absent");
        }
        let forced = windows
            .entries()
            .iter()
            .find(|e| e.text == "1.8.12")
            .unwrap();
        assert!(forced.creatable);
        let linux = table(Cloud::AzurePublic, false)
            .entries()
            .iter()
            .find(|e| e.text == "1.8.12")
            .unwrap();
        assert!(!linux.creatable, "the Linux table keeps 1.8.12 deprecated");
    }

    #[test]
    fn tables_sort_by_semver_with_prereleases_first() {
        let texts: Vec<&str> = table(Cloud::AzurePublic, false)
            .entries()
            .iter()
            .map(|e| e.text.as_str())
            .filter(|t| t.starts_with("1.10.0"))
            .collect();
        assert_eq!(
            texts,
            ["1.10.0-beta.2", "1.10.0-beta.4", "1.10.0-rc.1", "1.10.0"]
        );
        let all = table(Cloud::AzurePublic, false).entries();
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
        // 1.9.x sorts before 1.10.x (numeric, not lexical).
        let pos = |t: &str| all.iter().position(|e| e.text == t).unwrap();
        assert!(pos("1.9.11") < pos("1.10.0-beta.2"));
    }

    #[test]
    fn cloud_selection_is_case_insensitive_and_defaults_to_public() {
        assert_eq!(Cloud::from_azure_env("AzureStackCloud"), Cloud::AzureStack);
        assert_eq!(Cloud::from_azure_env("azurestackcloud"), Cloud::AzureStack);
        assert_eq!(Cloud::from_azure_env("AZURESTACKCLOUD"), Cloud::AzureStack);
        assert_eq!(
            Cloud::from_azure_env("AzurePublicCloud"),
            Cloud::AzurePublic
        );
        assert_eq!(Cloud::from_azure_env("AzureChinaCloud"), Cloud::AzurePublic);
        assert_eq!(Cloud::from_azure_env(""), Cloud::AzurePublic);
    }

    #[test]
    fn upgrade_paths_on_azure_stack_match_the_reference() {
        let stack = |v| targets(v, Cloud::AzureStack, false);
        assert!(stack("1.35.0").is_empty());
        assert_eq!(stack("1.34.4"), ["1.35.0"]);
        assert_eq!(stack("1.33.10"), ["1.34.4"]);
        assert_eq!(stack("1.33.5"), ["1.33.10", "1.34.4"]);
        assert_eq!(stack("1.32.9"), ["1.33.10"]);
        for old in ["1.31.13", "1.30.14", "1.25.7", "1.14.7"] {
            assert_eq!(stack(old), ["1.33.10"], "from {old}");
        }
    }

    #[test]
    fn upgrade_path_bound_uses_the_nearest_supported_minor_when_the_next_is_missing() {
        // 1.8.12 on public Windows: the next creatable minor is 1.33, so the
        // bound is 1.34.0-alpha.0 and only 1.33.10 qualifies.
        assert_eq!(targets("1.8.12", Cloud::AzurePublic, true), ["1.33.10"]);
    }

    #[test]
    fn upgrade_paths_include_prerelease_currents() {
        // A pre-release current sorts below its release.
        assert_eq!(
            targets("1.33.0-rc.1", Cloud::AzurePublic, false),
            ["1.33.10", "1.34.4"]
        );
    }

    #[test]
    fn upgrade_targets_reject_non_semver() {
        assert_eq!(
            upgrade_targets("v1.33.10", table(Cloud::AzureStack, false)),
            Err(Error::NotSemver("v1.33.10".into()))
        );
    }

    #[test]
    fn default_is_the_newest_patch_of_1_33() {
        for cloud in [Cloud::AzureStack, Cloud::AzurePublic] {
            for windows in [false, true] {
                assert_eq!(default_version(cloud, windows), Some("1.33.10"));
            }
        }
    }

    #[test]
    fn support_check_is_an_exact_match_against_the_linux_table() {
        assert!(is_supported("1.33.10", Cloud::AzureStack));
        assert!(
            is_supported("1.14.7", Cloud::AzureStack),
            "deprecated versions are known"
        );
        assert!(!is_supported("v1.33.10", Cloud::AzureStack));
        assert!(!is_supported("1.99.0", Cloud::AzureStack));
        assert!(
            !is_supported("1.6.6", Cloud::AzureStack),
            "public-only version"
        );
        assert!(is_supported("1.6.6", Cloud::AzurePublic));
        // 1.14.7 is in the Azure Stack Linux table but not the Windows one: still supported with --windows.
        assert!(!table(Cloud::AzureStack, true).contains("1.14.7"));
    }

    #[test]
    fn profiles_list_creatable_versions_or_the_one_asked() {
        let all = version_profiles(None, false, Cloud::AzureStack).unwrap();
        let versions: Vec<&str> = all.iter().map(|p| p.version.as_str()).collect();
        assert_eq!(versions, ["1.33.10", "1.34.4", "1.35.0"]);
        assert!(all[0].is_default && !all[1].is_default);
        let one = version_profiles(Some("1.25.7"), true, Cloud::AzureStack).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].upgrades, ["1.33.10"]);
        assert_eq!(
            version_profiles(Some("1.99.0"), false, Cloud::AzureStack),
            Err(Error::NotSupported("1.99.0".into()))
        );
        // An empty --version means "all", as in aks-engine.
        assert_eq!(
            version_profiles(Some(""), false, Cloud::AzureStack)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn skew_warns_only_when_a_minor_is_skipped() {
        let v = |t: &str| Version::parse(t).unwrap();
        assert_eq!(skew(&v("1.33.10"), &v("1.34.4")), None);
        assert_eq!(skew(&v("1.33.5"), &v("1.33.10")), None);
        assert_eq!(
            skew(&v("1.34.4"), &v("1.33.10")),
            None,
            "downgrades are not skew"
        );
        let warning = skew(&v("1.31.13"), &v("1.33.10")).unwrap();
        assert_eq!(warning.minors, 2);
        assert!(warning.to_string().contains("skips 1 minor release"));
        assert!(warning.to_string().contains("1.32"));
    }
}
