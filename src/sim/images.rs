//! The stamp's marketplace images and the Kubernetes versions each one carries.
//!
//! A node VM can only run a kubelet version its image carries (aks-engine's
//! VHDs cache the binaries; a disconnected stamp cannot download others). A VM
//! whose bootstrap asks for another version boots, but its kubelet never starts
//! and no Node registers. Images given by resource id (custom images) carry
//! every version.

use serde::Serialize;

/// One marketplace image version on the stamp.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketplaceImage {
    pub publisher: &'static str,
    pub offer: &'static str,
    pub sku: &'static str,
    pub version: &'static str,
    /// `Linux` or `Windows`.
    pub os_type: &'static str,
    /// Kubernetes versions the image carries (empty: none, a plain OS image).
    pub kubernetes_versions: &'static [&'static str],
}

pub const AKS_PUBLISHER: &str = "microsoft-aks";
pub const UBUNTU_2204_SKU: &str = "aks-engine-azurestack-ubuntu-2204";
pub const UBUNTU_2204_VERSION: &str = "2026.139.1";
pub const UBUNTU_2004_SKU: &str = "aks-engine-azurestack-ubuntu-2004";
pub const UBUNTU_2004_VERSION: &str = "2024.311.1";
pub const WINDOWS_OFFER: &str = "aks-windows";
pub const WINDOWS_SKU: &str = "2019-datacenter-core-azurestack-ctrd";
pub const WINDOWS_VERSION: &str = "17763.8644.20261391";

/// The images every simulated stamp offers. See `docs/simulator.md`.
pub const IMAGES: &[MarketplaceImage] = &[
    MarketplaceImage {
        publisher: AKS_PUBLISHER,
        offer: "aks",
        sku: UBUNTU_2204_SKU,
        version: UBUNTU_2204_VERSION,
        os_type: "Linux",
        kubernetes_versions: &["1.32.9", "1.33.5", "1.33.10", "1.34.4", "1.35.0"],
    },
    MarketplaceImage {
        publisher: AKS_PUBLISHER,
        offer: "aks",
        sku: UBUNTU_2004_SKU,
        version: UBUNTU_2004_VERSION,
        os_type: "Linux",
        kubernetes_versions: &[
            "1.28.15", "1.29.10", "1.29.15", "1.30.10", "1.30.14", "1.31.11", "1.31.13",
        ],
    },
    MarketplaceImage {
        publisher: AKS_PUBLISHER,
        offer: WINDOWS_OFFER,
        sku: WINDOWS_SKU,
        version: WINDOWS_VERSION,
        os_type: "Windows",
        kubernetes_versions: &["1.32.9", "1.33.5", "1.33.10", "1.34.4", "1.35.0"],
    },
    MarketplaceImage {
        publisher: "Canonical",
        offer: "0001-com-ubuntu-server-jammy",
        sku: "22_04-lts-gen2",
        version: "22.04.202611010",
        os_type: "Linux",
        kubernetes_versions: &[],
    },
    MarketplaceImage {
        publisher: "Canonical",
        offer: "UbuntuServer",
        sku: "18.04-LTS",
        version: "18.04.202401161",
        os_type: "Linux",
        kubernetes_versions: &[],
    },
];

/// The image `publisher:offer:sku:version` (case-insensitive); `latest` picks the
/// highest version of the sku.
pub fn find(
    publisher: &str,
    offer: &str,
    sku: &str,
    version: &str,
) -> Option<&'static MarketplaceImage> {
    let same = |image: &&MarketplaceImage| {
        image.publisher.eq_ignore_ascii_case(publisher)
            && image.offer.eq_ignore_ascii_case(offer)
            && image.sku.eq_ignore_ascii_case(sku)
    };
    if version.eq_ignore_ascii_case("latest") {
        IMAGES
            .iter()
            .filter(same)
            .max_by(|a, b| compare_versions(a.version, b.version))
    } else {
        IMAGES
            .iter()
            .filter(same)
            .find(|image| image.version.eq_ignore_ascii_case(version))
    }
}

fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    parse(a).cmp(&parse(b))
}

/// The marketplace image aks-engine-azurestack uses for a Linux `distro`.
pub fn linux_image_for_distro(distro: &str) -> &'static MarketplaceImage {
    let sku = match distro {
        "aks-ubuntu-16.04" | "aks-ubuntu-18.04" | "aks-ubuntu-20.04" => UBUNTU_2004_SKU,
        "ubuntu-18.04" | "ubuntu" => {
            return find("Canonical", "UbuntuServer", "18.04-LTS", "latest").expect("in table");
        }
        "ubuntu-20.04" | "ubuntu-22.04" => {
            return find(
                "Canonical",
                "0001-com-ubuntu-server-jammy",
                "22_04-lts-gen2",
                "latest",
            )
            .expect("in table");
        }
        _ => UBUNTU_2204_SKU,
    };
    find(AKS_PUBLISHER, "aks", sku, "latest").expect("in table")
}

/// The default Windows node image.
pub fn windows_image() -> &'static MarketplaceImage {
    find(AKS_PUBLISHER, WINDOWS_OFFER, WINDOWS_SKU, WINDOWS_VERSION).expect("in table")
}

/// True when `image` carries the kubelet `version` (`v` prefix allowed).
pub fn carries(image: &MarketplaceImage, version: &str) -> bool {
    let version = version.trim_start_matches('v');
    image.kubernetes_versions.contains(&version)
}
