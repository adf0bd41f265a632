//! API profiles: which api-version aksup sends for each resource type.

use std::fmt;
use std::str::FromStr;

/// An Azure Stack Hub API profile (or `latest` for public Azure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiProfile {
    /// `2020-09-01-hybrid`: the newest hybrid profile, the default on Azure Stack Hub.
    Hybrid20200901,
    /// `2019-03-01-hybrid`: older stamps.
    Hybrid20190301,
    /// `latest`: current public-Azure versions (not served by Azure Stack Hub).
    Latest,
}

/// The resource types aksup calls (each maps to one api-version per profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    VirtualMachines,
    VirtualMachineExtensions,
    AvailabilitySets,
    Images,
    /// Marketplace image versions (`locations/publishers/.../versions`).
    VirtualMachineImages,
    ComputeOperations,
    Disks,
    Snapshots,
    NetworkInterfaces,
    LoadBalancers,
    PublicIpAddresses,
    VirtualNetworks,
    NetworkSecurityGroups,
    RouteTables,
    NetworkOperations,
    Deployments,
    DeploymentOperations,
    ResourceGroups,
    Providers,
    Subscriptions,
    StorageAccounts,
}

impl ResourceType {
    /// Every resource type, in a stable order.
    pub const ALL: [ResourceType; 21] = [
        ResourceType::VirtualMachines,
        ResourceType::VirtualMachineExtensions,
        ResourceType::AvailabilitySets,
        ResourceType::Images,
        ResourceType::VirtualMachineImages,
        ResourceType::ComputeOperations,
        ResourceType::Disks,
        ResourceType::Snapshots,
        ResourceType::NetworkInterfaces,
        ResourceType::LoadBalancers,
        ResourceType::PublicIpAddresses,
        ResourceType::VirtualNetworks,
        ResourceType::NetworkSecurityGroups,
        ResourceType::RouteTables,
        ResourceType::NetworkOperations,
        ResourceType::Deployments,
        ResourceType::DeploymentOperations,
        ResourceType::ResourceGroups,
        ResourceType::Providers,
        ResourceType::Subscriptions,
        ResourceType::StorageAccounts,
    ];

    fn family(self) -> Family {
        use ResourceType::*;
        match self {
            VirtualMachines
            | VirtualMachineExtensions
            | AvailabilitySets
            | Images
            | VirtualMachineImages
            | ComputeOperations => Family::Compute,
            Disks | Snapshots => Family::Disks,
            NetworkInterfaces
            | LoadBalancers
            | PublicIpAddresses
            | VirtualNetworks
            | NetworkSecurityGroups
            | RouteTables
            | NetworkOperations => Family::Network,
            Deployments | DeploymentOperations | ResourceGroups | Providers => Family::Resources,
            Subscriptions => Family::Subscriptions,
            StorageAccounts => Family::Storage,
        }
    }
}

#[derive(Clone, Copy)]
enum Family {
    Compute,
    Disks,
    Network,
    Resources,
    Subscriptions,
    Storage,
}

impl ApiProfile {
    pub const ALL: [ApiProfile; 3] = [
        ApiProfile::Hybrid20200901,
        ApiProfile::Hybrid20190301,
        ApiProfile::Latest,
    ];

    /// The profile to use when none is chosen: the newest hybrid profile on
    /// Azure Stack Hub, `latest` on public Azure.
    pub fn default_for(is_azure_stack: bool) -> Self {
        if is_azure_stack {
            ApiProfile::Hybrid20200901
        } else {
            ApiProfile::Latest
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiProfile::Hybrid20200901 => "2020-09-01-hybrid",
            ApiProfile::Hybrid20190301 => "2019-03-01-hybrid",
            ApiProfile::Latest => "latest",
        }
    }

    /// The api-version this profile sends for `resource`.
    pub fn api_version(self, resource: ResourceType) -> &'static str {
        let family = resource.family();
        match self {
            ApiProfile::Hybrid20200901 => match family {
                Family::Compute => "2020-06-01",
                Family::Disks => "2019-07-01",
                Family::Network => "2018-11-01",
                Family::Resources => "2019-10-01",
                Family::Subscriptions => "2016-06-01",
                Family::Storage => "2019-06-01",
            },
            ApiProfile::Hybrid20190301 => match family {
                Family::Compute => "2017-12-01",
                Family::Disks => "2017-03-30",
                Family::Network => "2017-10-01",
                Family::Resources => "2018-05-01",
                Family::Subscriptions => "2016-06-01",
                Family::Storage => "2017-10-01",
            },
            ApiProfile::Latest => match family {
                Family::Compute => "2024-07-01",
                Family::Disks => "2024-03-02",
                Family::Network => "2024-05-01",
                Family::Resources => "2024-03-01",
                Family::Subscriptions => "2022-12-01",
                Family::Storage => "2023-05-01",
            },
        }
    }
}

impl fmt::Display for ApiProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiProfile {
    type Err = super::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ApiProfile::ALL
            .into_iter()
            .find(|profile| profile.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                super::Error::Config(format!(
                    "unknown api profile {text:?}: use 2020-09-01-hybrid (Azure Stack Hub default), 2019-03-01-hybrid (older stamps) or latest (public Azure)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_2020_table() {
        let p = ApiProfile::Hybrid20200901;
        assert_eq!(p.api_version(ResourceType::VirtualMachines), "2020-06-01");
        assert_eq!(
            p.api_version(ResourceType::VirtualMachineImages),
            "2020-06-01"
        );
        assert_eq!(p.api_version(ResourceType::Disks), "2019-07-01");
        assert_eq!(p.api_version(ResourceType::NetworkInterfaces), "2018-11-01");
        assert_eq!(p.api_version(ResourceType::Deployments), "2019-10-01");
        assert_eq!(
            p.api_version(ResourceType::DeploymentOperations),
            "2019-10-01"
        );
        assert_eq!(p.api_version(ResourceType::ResourceGroups), "2019-10-01");
        assert_eq!(p.api_version(ResourceType::Subscriptions), "2016-06-01");
        assert_eq!(p.api_version(ResourceType::StorageAccounts), "2019-06-01");
    }

    #[test]
    fn hybrid_2019_table() {
        let p = ApiProfile::Hybrid20190301;
        assert_eq!(p.api_version(ResourceType::VirtualMachines), "2017-12-01");
        assert_eq!(p.api_version(ResourceType::Snapshots), "2017-03-30");
        assert_eq!(p.api_version(ResourceType::LoadBalancers), "2017-10-01");
        assert_eq!(p.api_version(ResourceType::Deployments), "2018-05-01");
        assert_eq!(p.api_version(ResourceType::StorageAccounts), "2017-10-01");
    }

    #[test]
    fn every_type_has_a_version_in_every_profile() {
        for profile in ApiProfile::ALL {
            for resource in ResourceType::ALL {
                let version = profile.api_version(resource);
                assert_eq!(version.len(), 10, "{profile} {resource:?} -> {version}");
            }
        }
    }

    #[test]
    fn parse_and_default() {
        assert_eq!(
            "2019-03-01-HYBRID".parse::<ApiProfile>().ok(),
            Some(ApiProfile::Hybrid20190301)
        );
        assert_eq!(
            "latest".parse::<ApiProfile>().ok(),
            Some(ApiProfile::Latest)
        );
        let error = "2018-03-01-hybrid".parse::<ApiProfile>().unwrap_err();
        assert!(error.to_string().contains("2020-09-01-hybrid"));
        assert_eq!(ApiProfile::default_for(true), ApiProfile::Hybrid20200901);
        assert_eq!(ApiProfile::default_for(false), ApiProfile::Latest);
    }
}
