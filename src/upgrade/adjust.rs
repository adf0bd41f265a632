//! The apimodel changes aks-engine-azurestack makes before upgrading a cluster
//! on Azure Stack Hub, computed as a list so that aksup can show them (plan,
//! dry run) before it applies them.

use semver::Version;
use serde::Serialize;
use serde_json::Value;

use crate::model::{self, ApiModel};

/// The distro every Linux node moves to on Azure Stack Hub.
pub const AZURE_STACK_DISTRO: &str = "aks-ubuntu-22.04";
/// Distros that are no longer served on Azure Stack Hub.
const RETIRED_DISTROS: [&str; 3] = ["aks-ubuntu-16.04", "aks-ubuntu-18.04", "aks-ubuntu-20.04"];
/// Windows image aksup moves Windows pools to with `--upgrade-windows-vhd`.
pub const WINDOWS_SKU: &str = "2019-datacenter-core-azurestack-ctrd";
pub const WINDOWS_IMAGE_VERSION: &str = "17763.8644.20261391";

/// One change to the apimodel: where, from what, to what, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adjustment {
    /// JSON pointer into the apimodel.
    pub pointer: String,
    /// The value before (null when absent).
    pub from: Value,
    pub to: Value,
    pub reason: String,
}

/// Options that change which adjustments apply.
#[derive(Debug, Clone, Copy)]
pub struct AdjustOptions {
    /// `--upgrade-windows-vhd` (default true).
    pub upgrade_windows_vhd: bool,
}

impl Default for AdjustOptions {
    fn default() -> Self {
        Self {
            upgrade_windows_vhd: true,
        }
    }
}

/// The adjustments aks-engine-azurestack makes for an upgrade to `target`, in
/// its order: Windows image, distro, cloud controller manager, container
/// runtime, and `--cloud-provider` flags. Empty for clusters outside Azure Stack.
pub fn azure_stack_adjustments(
    model: &ApiModel,
    target: &Version,
    options: AdjustOptions,
) -> Vec<Adjustment> {
    let view = model.view();
    let mut out = Vec::new();
    if !view.is_azure_stack() {
        return out;
    }
    let raw = model.raw();

    if options.upgrade_windows_vhd
        && view.has_windows_pool()
        && let Some(windows) = &view.properties.windows_profile
        && windows.windows_publisher == "microsoft-aks"
        && windows.windows_offer == "aks-windows"
        && windows.windows_sku.contains("ctrd")
    {
        push_if_changed(
            &mut out,
            raw,
            "/properties/windowsProfile/windowsSku",
            Value::from(WINDOWS_SKU),
            "the Windows image is refreshed to the one this aksup release validated (--upgrade-windows-vhd)",
        );
        push_if_changed(
            &mut out,
            raw,
            "/properties/windowsProfile/imageVersion",
            Value::from(WINDOWS_IMAGE_VERSION),
            "the Windows image is refreshed to the one this aksup release validated (--upgrade-windows-vhd)",
        );
    }

    if let Some(master) = &view.properties.master_profile
        && RETIRED_DISTROS.contains(&master.distro.as_str())
    {
        push_if_changed(
            &mut out,
            raw,
            "/properties/masterProfile/distro",
            Value::from(AZURE_STACK_DISTRO),
            &format!(
                "distro '{}' is no longer supported on Azure Stack Hub",
                master.distro
            ),
        );
    }
    for (index, pool) in view.properties.agent_pool_profiles.iter().enumerate() {
        if RETIRED_DISTROS.contains(&pool.distro.as_str()) {
            push_if_changed(
                &mut out,
                raw,
                &format!("/properties/agentPoolProfiles/{index}/distro"),
                Value::from(AZURE_STACK_DISTRO),
                &format!(
                    "distro '{}' of pool {} is no longer supported on Azure Stack Hub",
                    pool.distro, pool.name
                ),
            );
        }
    }

    let config = view.kubernetes_config().cloned().unwrap_or_default();
    if *target >= Version::new(1, 21, 0) {
        push_if_changed(
            &mut out,
            raw,
            "/properties/orchestratorProfile/kubernetesConfig/useCloudControllerManager",
            Value::Bool(true),
            "the in-tree cloud provider is no longer supported on Azure Stack Hub for v1.21+ clusters",
        );
    }
    if *target >= Version::new(1, 24, 0) && config.container_runtime.eq_ignore_ascii_case("docker")
    {
        push_if_changed(
            &mut out,
            raw,
            "/properties/orchestratorProfile/kubernetesConfig/containerRuntime",
            Value::from("containerd"),
            "the docker runtime is no longer supported for v1.24+ clusters",
        );
    }
    for (key, flags) in [
        ("kubeletConfig", &config.kubelet_config),
        ("controllerManagerConfig", &config.controller_manager_config),
        (
            "cloudControllerManagerConfig",
            &config.cloud_controller_manager_config,
        ),
        ("apiServerConfig", &config.api_server_config),
    ] {
        if flags.contains_key("--cloud-provider") {
            push_if_changed(
                &mut out,
                raw,
                &format!("/properties/orchestratorProfile/kubernetesConfig/{key}/--cloud-provider"),
                Value::from("external"),
                "Kubernetes components use the external cloud provider on Azure Stack Hub",
            );
        }
    }
    out
}

/// Applies adjustments to the model (in memory; saving is the caller's).
pub fn apply(model: &mut ApiModel, adjustments: &[Adjustment]) -> model::Result<()> {
    for adjustment in adjustments {
        model.set(&adjustment.pointer, adjustment.to.clone())?;
    }
    Ok(())
}

fn push_if_changed(out: &mut Vec<Adjustment>, raw: &Value, pointer: &str, to: Value, reason: &str) {
    let from = raw.pointer(pointer).cloned().unwrap_or(Value::Null);
    if from != to {
        out.push(Adjustment {
            pointer: pointer.to_owned(),
            from,
            to,
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(json: &str) -> ApiModel {
        ApiModel::parse(json).unwrap()
    }

    const OLD_STACK: &str = r#"{"apiVersion":"vlabs","location":"local","properties":{
        "orchestratorProfile":{"orchestratorVersion":"1.23.15","kubernetesConfig":{
            "containerRuntime":"docker","useCloudControllerManager":false,
            "kubeletConfig":{"--cloud-provider":"azure","--max-pods":"30"},
            "controllerManagerConfig":{"--cloud-provider":"azure"}}},
        "customCloudProfile":{"portalURL":"https://portal.local.azurestack.external/"},
        "masterProfile":{"count":1,"dnsPrefix":"old","distro":"aks-ubuntu-18.04"},
        "agentPoolProfiles":[{"name":"linux","count":2,"distro":"aks-ubuntu-20.04"},
                             {"name":"win","count":1,"osType":"Windows"}],
        "windowsProfile":{"adminUsername":"azureuser","windowsPublisher":"microsoft-aks","windowsOffer":"aks-windows",
            "windowsSku":"2019-datacenter-core-azurestack-ctrd-2405","imageVersion":"17763.5820.240516"}}}"#;

    #[test]
    fn an_old_docker_cluster_gets_every_adjustment_in_order() {
        let m = model(OLD_STACK);
        let adjustments =
            azure_stack_adjustments(&m, &Version::new(1, 34, 4), AdjustOptions::default());
        let pointers: Vec<&str> = adjustments.iter().map(|a| a.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/properties/windowsProfile/windowsSku",
                "/properties/windowsProfile/imageVersion",
                "/properties/masterProfile/distro",
                "/properties/agentPoolProfiles/0/distro",
                "/properties/orchestratorProfile/kubernetesConfig/useCloudControllerManager",
                "/properties/orchestratorProfile/kubernetesConfig/containerRuntime",
                "/properties/orchestratorProfile/kubernetesConfig/kubeletConfig/--cloud-provider",
                "/properties/orchestratorProfile/kubernetesConfig/controllerManagerConfig/--cloud-provider",
            ]
        );
        assert_eq!(adjustments[2].from, Value::from("aks-ubuntu-18.04"));
        assert_eq!(adjustments[2].to, Value::from(AZURE_STACK_DISTRO));
    }

    #[test]
    fn applying_changes_only_the_adjusted_fields_and_keeps_key_order() {
        let mut m = model(OLD_STACK);
        let before = m.raw().clone();
        let adjustments =
            azure_stack_adjustments(&m, &Version::new(1, 34, 4), AdjustOptions::default());
        apply(&mut m, &adjustments).unwrap();
        assert_eq!(
            m.view().properties.master_profile.as_ref().unwrap().distro,
            AZURE_STACK_DISTRO
        );
        let config = m.view().kubernetes_config().unwrap();
        assert_eq!(config.container_runtime, "containerd");
        assert_eq!(config.use_cloud_controller_manager, Some(true));
        assert_eq!(config.kubelet_config["--cloud-provider"], "external");
        assert_eq!(config.kubelet_config["--max-pods"], "30");
        // Keys keep their places.
        let keys = |v: &Value| -> Vec<String> {
            v.pointer("/properties/orchestratorProfile/kubernetesConfig")
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(keys(&before), keys(m.raw()));
        // Running again finds nothing left to do.
        assert!(
            azure_stack_adjustments(&m, &Version::new(1, 34, 4), AdjustOptions::default())
                .is_empty()
        );
    }

    #[test]
    fn version_thresholds_gate_ccm_and_containerd() {
        let m = model(OLD_STACK);
        let pointers = |target: Version| -> Vec<String> {
            azure_stack_adjustments(
                &m,
                &target,
                AdjustOptions {
                    upgrade_windows_vhd: false,
                },
            )
            .into_iter()
            .map(|a| a.pointer)
            .collect()
        };
        let at_1_20 = pointers(Version::new(1, 20, 6));
        assert!(
            !at_1_20
                .iter()
                .any(|p| p.ends_with("useCloudControllerManager"))
        );
        assert!(!at_1_20.iter().any(|p| p.ends_with("containerRuntime")));
        let at_1_21 = pointers(Version::new(1, 21, 0));
        assert!(
            at_1_21
                .iter()
                .any(|p| p.ends_with("useCloudControllerManager"))
        );
        assert!(!at_1_21.iter().any(|p| p.ends_with("containerRuntime")));
        assert!(
            pointers(Version::new(1, 24, 0))
                .iter()
                .any(|p| p.ends_with("containerRuntime"))
        );
        assert!(
            !at_1_20.iter().any(|p| p.contains("windowsProfile")),
            "--upgrade-windows-vhd=false"
        );
    }

    #[test]
    fn clusters_outside_azure_stack_are_left_alone() {
        let public = OLD_STACK.replace(
            r#""customCloudProfile":{"portalURL":"https://portal.local.azurestack.external/"},"#,
            "",
        );
        assert!(
            azure_stack_adjustments(
                &model(&public),
                &Version::new(1, 34, 4),
                AdjustOptions::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn a_missing_kubernetes_config_is_created_for_ccm() {
        let mut m = model(
            r#"{"apiVersion":"vlabs","properties":{"orchestratorProfile":{"orchestratorVersion":"1.33.10"},
            "customCloudProfile":{},"masterProfile":{"count":1,"dnsPrefix":"x"}}}"#,
        );
        let adjustments =
            azure_stack_adjustments(&m, &Version::new(1, 34, 4), AdjustOptions::default());
        assert_eq!(adjustments.len(), 1);
        assert_eq!(adjustments[0].from, Value::Null);
        apply(&mut m, &adjustments).unwrap();
        assert_eq!(
            m.view()
                .kubernetes_config()
                .unwrap()
                .use_cloud_controller_manager,
            Some(true)
        );
    }
}
