//! Which image a node VM boots from.

use serde::Serialize;

use crate::model::{ContainerService, ImageReference};
use crate::names::PoolKind;

use super::{Error, Result};

/// The publisher of the AKS Engine base images on the Azure Stack Hub marketplace.
pub const AKS_PUBLISHER: &str = "microsoft-aks";
/// Linux base image for `aks-ubuntu-22.04` (the distro every Azure Stack Hub node moves to).
pub const UBUNTU_2204: MarketplaceImageConst = MarketplaceImageConst {
    publisher: AKS_PUBLISHER,
    offer: "aks",
    sku: "aks-engine-azurestack-ubuntu-2204",
    version: "2026.139.1",
};
/// Linux base image for `aks-ubuntu-20.04` (older stamps).
pub const UBUNTU_2004: MarketplaceImageConst = MarketplaceImageConst {
    publisher: AKS_PUBLISHER,
    offer: "aks",
    sku: "aks-engine-azurestack-ubuntu-2004",
    version: "2024.311.1",
};
/// Windows base image.
pub const WINDOWS_2019: MarketplaceImageConst = MarketplaceImageConst {
    publisher: AKS_PUBLISHER,
    offer: "aks-windows",
    sku: "2019-datacenter-core-azurestack-ctrd",
    version: "17763.8644.20261391",
};

/// A marketplace image version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MarketplaceImage {
    pub publisher: String,
    pub offer: String,
    pub sku: String,
    pub version: String,
}

/// A compile-time marketplace image; `.owned()` gives a [`MarketplaceImage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketplaceImageConst {
    pub publisher: &'static str,
    pub offer: &'static str,
    pub sku: &'static str,
    pub version: &'static str,
}

impl MarketplaceImageConst {
    pub fn owned(&self) -> MarketplaceImage {
        MarketplaceImage {
            publisher: self.publisher.to_owned(),
            offer: self.offer.to_owned(),
            sku: self.sku.to_owned(),
            version: self.version.to_owned(),
        }
    }
}

/// The image of a node VM.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum NodeImage {
    Marketplace(MarketplaceImage),
    /// A custom image or gallery image version, by resource id.
    Custom {
        id: String,
    },
}

impl NodeImage {
    /// The `storageProfile.imageReference` object.
    pub fn image_reference(&self) -> serde_json::Value {
        match self {
            NodeImage::Marketplace(image) => serde_json::json!({
                "publisher": image.publisher,
                "offer": image.offer,
                "sku": image.sku,
                "version": image.version,
            }),
            NodeImage::Custom { id } => serde_json::json!({ "id": id }),
        }
    }
}

/// The image a VM of `pool` boots from: a custom `imageReference` when the
/// profile has one, else the marketplace image of its distro (Linux) or the
/// Windows profile's image.
pub fn node_image(
    model: &ContainerService,
    pool: &PoolKind,
    subscription_id: &str,
) -> Result<NodeImage> {
    let properties = &model.properties;
    let (distro, custom) = match pool {
        PoolKind::Master => {
            let master = properties
                .master_profile
                .as_ref()
                .ok_or(Error::NoMasterProfile)?;
            (master.distro.as_str(), master.image_reference.as_ref())
        }
        PoolKind::Agent { position, .. } => {
            let profile = properties
                .agent_pool_profiles
                .get(*position)
                .ok_or_else(|| Error::NoPool(pool.pool_name().to_owned()))?;
            (profile.distro.as_str(), profile.image_reference.as_ref())
        }
    };
    if let Some(reference) = custom.filter(|reference| !reference.name.is_empty()) {
        return Ok(NodeImage::Custom {
            id: custom_image_id(reference, subscription_id),
        });
    }
    if pool.is_windows() {
        let windows = properties.windows_profile.clone().unwrap_or_default();
        let or = |value: &str, default: &str| {
            if value.is_empty() {
                default.to_owned()
            } else {
                value.to_owned()
            }
        };
        return Ok(NodeImage::Marketplace(MarketplaceImage {
            publisher: or(&windows.windows_publisher, WINDOWS_2019.publisher),
            offer: or(&windows.windows_offer, WINDOWS_2019.offer),
            sku: or(&windows.windows_sku, WINDOWS_2019.sku),
            version: or(&windows.image_version, WINDOWS_2019.version),
        }));
    }
    match distro {
        "" | "aks-ubuntu-22.04" => Ok(NodeImage::Marketplace(UBUNTU_2204.owned())),
        "aks-ubuntu-20.04" => Ok(NodeImage::Marketplace(UBUNTU_2004.owned())),
        other => Err(Error::UnknownDistro {
            pool: pool.pool_name().to_owned(),
            distro: other.to_owned(),
        }),
    }
}

fn custom_image_id(reference: &ImageReference, subscription_id: &str) -> String {
    let subscription = if reference.subscription_id.is_empty() {
        subscription_id
    } else {
        &reference.subscription_id
    };
    let base = format!(
        "/subscriptions/{subscription}/resourceGroups/{}/providers/Microsoft.Compute",
        reference.resource_group
    );
    if reference.gallery.is_empty() {
        format!("{base}/images/{}", reference.name)
    } else {
        format!(
            "{base}/galleries/{}/images/{}/versions/{}",
            reference.gallery, reference.name, reference.version
        )
    }
}

/// Every marketplace image the cluster's new VMs need, sorted and unique: what
/// the preflight checks exist on the stamp before anything is deleted.
pub fn required_marketplace_images(
    model: &ContainerService,
    subscription_id: &str,
) -> Result<Vec<MarketplaceImage>> {
    let mut pools = vec![PoolKind::Master];
    for (position, profile) in model.properties.agent_pool_profiles.iter().enumerate() {
        pools.push(PoolKind::Agent {
            name: profile.name.clone(),
            position,
            windows: profile.is_windows(),
        });
    }
    let mut images = std::collections::BTreeSet::new();
    for pool in &pools {
        if let NodeImage::Marketplace(image) = node_image(model, pool, subscription_id)? {
            images.insert(image);
        }
    }
    Ok(images.into_iter().collect())
}
