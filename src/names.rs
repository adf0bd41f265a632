//! Resource and node names as aks-engine derives them (reference §3).
//!
//! Every name aksup uses is derived here, once: VM, NIC, etcd disk and
//! availability-set names from the pool and the cluster's 8-digit suffix, and
//! the Kubernetes node name from the VM name (lowercased, written once).

use std::fmt;

/// Name of the control-plane pool in tags and plans.
pub const MASTER_POOL: &str = "master";

/// A VM name as Azure shows it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct VmName(pub String);

/// A Kubernetes node name: the VM name (Linux) or computer name (Windows), lowercased.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct NodeName(pub String);

impl VmName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The node a kubelet on this VM registers: the name lowercased. (On
    /// Windows the computer name is the VM name, so the rule is the same.)
    pub fn node_name(&self) -> NodeName {
        NodeName(self.0.to_lowercase())
    }
}

impl NodeName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which pool a VM belongs to, with what aks-engine needs to name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PoolKind {
    Master,
    /// An agent pool: its name, its position in `agentPoolProfiles`, and whether it runs Windows.
    Agent {
        name: String,
        position: usize,
        windows: bool,
    },
}

impl PoolKind {
    /// The `poolName` tag value.
    pub fn pool_name(&self) -> &str {
        match self {
            PoolKind::Master => MASTER_POOL,
            PoolKind::Agent { name, .. } => name,
        }
    }

    pub fn is_windows(&self) -> bool {
        matches!(self, PoolKind::Agent { windows: true, .. })
    }

    /// The VM name prefix: `k8s-master-<suffix>`, `k8s-<pool>-<suffix>`, or
    /// `<suffix[0:4]>k8s<position:02>` for Windows.
    pub fn vm_prefix(&self, suffix: &str) -> String {
        match self {
            PoolKind::Master => format!("k8s-master-{suffix}"),
            PoolKind::Agent {
                windows: true,
                position,
                ..
            } => {
                let short: String = suffix.chars().take(4).collect();
                format!("{short}k8s{position:02}")
            }
            PoolKind::Agent { name, .. } => format!("k8s-{name}-{suffix}"),
        }
    }

    /// The VM at `index`: `<prefix>-<i>` (Linux) or `<prefix><i>` (Windows).
    pub fn vm_name(&self, suffix: &str, index: usize) -> VmName {
        let prefix = self.vm_prefix(suffix);
        if self.is_windows() {
            VmName(format!("{prefix}{index}"))
        } else {
            VmName(format!("{prefix}-{index}"))
        }
    }

    /// The NIC of the VM at `index`: `<prefix>-nic-<i>`.
    pub fn nic_name(&self, suffix: &str, index: usize) -> String {
        format!("{}-nic-{index}", self.vm_prefix(suffix))
    }

    /// The availability set: `master-availabilitySet-<suffix>` or `<pool>-availabilitySet-<suffix>`.
    pub fn availability_set_name(&self, suffix: &str) -> String {
        format!("{}-availabilitySet-{suffix}", self.pool_name())
    }
}

/// The etcd data disk of master `index`: `k8s-master-<suffix>-<i>-etcddisk`.
pub fn etcd_disk_name(suffix: &str, index: usize) -> String {
    format!("{}-{index}-etcddisk", PoolKind::Master.vm_prefix(suffix))
}

/// The parts of a Linux VM name `^[0-9a-zA-Z]{3}-(.+)-([0-9a-fA-F]{8})-{0,2}([0-9]+)$`:
/// (pool, suffix, index). `k8s-master-12345678-0` → (`master`, `12345678`, 0).
pub fn parse_linux_vm_name(name: &str) -> Option<(String, String, usize)> {
    let (head, rest) = name.split_at_checked(4)?;
    if !head.ends_with('-') || !head[..3].chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let digits_start = rest.rfind(|c: char| !c.is_ascii_digit())? + 1;
    let index: usize = rest[digits_start..].parse().ok()?;
    let before = &rest[..digits_start];
    let before_index = before.trim_end_matches('-');
    // aks-engine writes one dash before the index; the pattern allows up to two.
    if before.len() - before_index.len() > 2 {
        return None;
    }
    let (pool, suffix) = before_index.rsplit_once('-')?;
    if suffix.len() != 8 || !suffix.chars().all(|c| c.is_ascii_hexdigit()) || pool.is_empty() {
        return None;
    }
    Some((pool.to_owned(), suffix.to_owned(), index))
}

/// The parts of a Windows VM name `<suffix[0:4]>k8s<position:02><i>`:
/// (first four suffix characters, pool position, index).
pub fn parse_windows_vm_name(name: &str) -> Option<(String, usize, usize)> {
    let short = name.get(..4)?;
    let rest = name.get(4..)?.strip_prefix("k8s")?;
    if rest.len() < 3
        || !rest.chars().all(|c| c.is_ascii_digit())
        || !short.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let position = rest[..2].parse().ok()?;
    let index = rest[2..].parse().ok()?;
    Some((short.to_owned(), position, index))
}

/// A deployment name derived from (pool, index, target version), at most 64
/// characters, never from time or randomness: `aksup-<pool>-<index>-<version>`
/// with dots as dashes; long pool names are shortened with a stable hash.
pub fn deployment_name(pool: &str, index: usize, target_version: &str) -> String {
    let version = target_version.replace(['.', '+'], "-");
    let name = format!("aksup-{pool}-{index}-{version}");
    if name.len() <= 64 {
        return name;
    }
    let hash = fnv1a(pool.as_bytes());
    let tail = format!("-{hash:08x}-{index}-{version}");
    let keep = 64usize.saturating_sub("aksup-".len() + tail.len());
    let short: String = pool.chars().take(keep).collect();
    format!("aksup-{short}{tail}")
}

/// 32-bit FNV-1a: a small, stable hash for shortening names (not for security).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, position: usize, windows: bool) -> PoolKind {
        PoolKind::Agent {
            name: name.into(),
            position,
            windows,
        }
    }

    #[test]
    fn names_follow_aks_engine() {
        let suffix = "38062788";
        assert_eq!(
            PoolKind::Master.vm_name(suffix, 0).as_str(),
            "k8s-master-38062788-0"
        );
        assert_eq!(
            PoolKind::Master.nic_name(suffix, 0),
            "k8s-master-38062788-nic-0"
        );
        assert_eq!(etcd_disk_name(suffix, 0), "k8s-master-38062788-0-etcddisk");
        assert_eq!(
            PoolKind::Master.availability_set_name(suffix),
            "master-availabilitySet-38062788"
        );
        let linux = agent("linuxpool", 0, false);
        assert_eq!(
            linux.vm_name(suffix, 2).as_str(),
            "k8s-linuxpool-38062788-2"
        );
        assert_eq!(linux.nic_name(suffix, 2), "k8s-linuxpool-38062788-nic-2");
        assert_eq!(
            linux.availability_set_name(suffix),
            "linuxpool-availabilitySet-38062788"
        );
        let windows = agent("winpool", 1, true);
        assert_eq!(windows.vm_name("12345678", 0).as_str(), "1234k8s010");
        assert_eq!(windows.nic_name("12345678", 0), "1234k8s01-nic-0");
        assert_eq!(windows.pool_name(), "winpool");
    }

    #[test]
    fn node_names_are_lowercased_vm_names() {
        assert_eq!(
            VmName::new("K8S-Master-38062788-0").node_name().as_str(),
            "k8s-master-38062788-0"
        );
    }

    #[test]
    fn linux_names_parse_back() {
        assert_eq!(
            parse_linux_vm_name("k8s-master-38062788-0"),
            Some(("master".into(), "38062788".into(), 0))
        );
        assert_eq!(
            parse_linux_vm_name("k8s-my-pool-3806a788-12"),
            Some(("my-pool".into(), "3806a788".into(), 12))
        );
        assert_eq!(
            parse_linux_vm_name("k8s-pool-1234567-0"),
            None,
            "suffix of 7"
        );
        assert_eq!(parse_linux_vm_name("jumpbox"), None);
        assert_eq!(parse_linux_vm_name("k8s-pool-12345678-"), None);
    }

    #[test]
    fn windows_names_parse_back() {
        assert_eq!(
            parse_windows_vm_name("1234k8s010"),
            Some(("1234".into(), 1, 0))
        );
        assert_eq!(
            parse_windows_vm_name("1234k8s0112"),
            Some(("1234".into(), 1, 12))
        );
        assert_eq!(parse_windows_vm_name("k8s-master-1-0"), None);
    }

    #[test]
    fn deployment_names_are_derived_and_bounded() {
        assert_eq!(
            deployment_name("master", 0, "1.34.4"),
            "aksup-master-0-1-34-4"
        );
        assert_eq!(
            deployment_name("master", 0, "1.34.4"),
            deployment_name("master", 0, "1.34.4")
        );
        let long = "a".repeat(80);
        let name = deployment_name(&long, 999, "1.35.0-rc.1");
        assert!(name.len() <= 64, "{name} has {} characters", name.len());
        assert_ne!(name, deployment_name(&"b".repeat(80), 999, "1.35.0-rc.1"));
        assert_eq!(name, deployment_name(&long, 999, "1.35.0-rc.1"));
    }
}
