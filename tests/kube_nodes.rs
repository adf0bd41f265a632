//! Request-sequence tests of cordon / uncordon, wait Ready and the property
//! copy, plus the apimodel connection.

mod kube_common;

use std::time::Duration;

use aksup::kube::events::NodeEvent;
use aksup::kube::{
    CopyOptions, CordonOutcome, NodeName, RecordedEvents, RetryPolicy, UncordonOutcome, copy,
    cordon, keys, uncordon, wait_ready,
};
use k8s_openapi::api::core::v1::Node;
use kube_common::*;
use serde_json::{Value, json};

const NODE: &str = "/api/v1/nodes/k8s-agent-0";

fn name() -> NodeName {
    NodeName::new("k8s-agent-0")
}

#[tokio::test(start_paused = true)]
async fn cordon_patches_unschedulable_and_marks_the_node() {
    let (client, handle) = mock_client();
    let events = RecordedEvents::default();
    let script = vec![
        Exchange::ok("GET", NODE, node("k8s-agent-0", false, json!({}))),
        Exchange::ok(
            "PATCH",
            NODE,
            node(
                "k8s-agent-0",
                true,
                json!({keys::CORDONED_BY_AKSUP: "true"}),
            ),
        ),
    ];
    let (outcome, recorded) = run(
        handle,
        script,
        cordon(&client, &name(), &RetryPolicy::default(), &events),
    )
    .await;
    assert_eq!(outcome.unwrap(), CordonOutcome::Cordoned);
    assert_eq!(
        recorded[1].body,
        json!({"metadata": {"resourceVersion": "7", "annotations": {"aksup.io/cordoned": "true"}},
               "spec": {"unschedulable": true}})
    );
    assert_eq!(events.take(), vec![NodeEvent::Cordoned { node: name() }]);
}

#[tokio::test(start_paused = true)]
async fn cordon_checks_before_patching() {
    for (annotations, by_aksup) in [
        (json!({}), false),
        (json!({keys::CORDONED_BY_AKSUP: "true"}), true),
    ] {
        let (client, handle) = mock_client();
        let script = vec![Exchange::ok(
            "GET",
            NODE,
            node("k8s-agent-0", true, annotations),
        )];
        let (outcome, _) = run(
            handle,
            script,
            cordon(
                &client,
                &name(),
                &RetryPolicy::default(),
                &RecordedEvents::default(),
            ),
        )
        .await;
        assert_eq!(
            outcome.unwrap(),
            CordonOutcome::AlreadyCordoned { by_aksup }
        );
    }
}

#[tokio::test(start_paused = true)]
async fn cordon_of_a_missing_node_is_done() {
    let (client, handle) = mock_client();
    let script = vec![Exchange::fail(
        "GET",
        NODE,
        404,
        "NotFound",
        "nodes \"k8s-agent-0\" not found",
    )];
    let (outcome, _) = run(
        handle,
        script,
        cordon(
            &client,
            &name(),
            &RetryPolicy::default(),
            &RecordedEvents::default(),
        ),
    )
    .await;
    assert_eq!(outcome.unwrap(), CordonOutcome::NodeNotFound);
}

#[tokio::test(start_paused = true)]
async fn cordon_conflict_is_retried_from_a_fresh_read() {
    let (client, handle) = mock_client();
    let events = RecordedEvents::default();
    let mut newer = node("k8s-agent-0", false, json!({}));
    newer["metadata"]["resourceVersion"] = json!("8");
    let script = vec![
        Exchange::ok("GET", NODE, node("k8s-agent-0", false, json!({}))),
        Exchange::fail(
            "PATCH",
            NODE,
            409,
            "Conflict",
            "the object has been modified",
        ),
        Exchange::ok("GET", NODE, newer),
        Exchange::ok("PATCH", NODE, node("k8s-agent-0", true, json!({}))),
    ];
    let (outcome, recorded) = run(
        handle,
        script,
        cordon(&client, &name(), &RetryPolicy::default(), &events),
    )
    .await;
    assert_eq!(outcome.unwrap(), CordonOutcome::Cordoned);
    assert_eq!(recorded[3].body["metadata"]["resourceVersion"], json!("8"));
    assert!(matches!(
        events.take()[0],
        NodeEvent::Retrying {
            status: 409,
            attempt: 1,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn cordon_gives_up_on_a_non_retryable_status() {
    let (client, handle) = mock_client();
    let script = vec![
        Exchange::ok("GET", NODE, node("k8s-agent-0", false, json!({}))),
        Exchange::fail("PATCH", NODE, 403, "Forbidden", "no"),
    ];
    let (outcome, _) = run(
        handle,
        script,
        cordon(
            &client,
            &name(),
            &RetryPolicy::default(),
            &RecordedEvents::default(),
        ),
    )
    .await;
    let err = outcome.unwrap_err();
    assert!(matches!(err, aksup::kube::Error::Cordon { .. }));
    assert!(!err.is_retryable());
    assert_eq!(err.node(), Some(&name()));
}

#[tokio::test(start_paused = true)]
async fn uncordon_clears_only_what_aksup_cordoned() {
    let (client, handle) = mock_client();
    let script = vec![
        Exchange::ok(
            "GET",
            NODE,
            node(
                "k8s-agent-0",
                true,
                json!({keys::CORDONED_BY_AKSUP: "true", "other": "x"}),
            ),
        ),
        Exchange::ok("PATCH", NODE, node("k8s-agent-0", false, json!({}))),
    ];
    let (outcome, recorded) = run(
        handle,
        script,
        uncordon(
            &client,
            &name(),
            &RetryPolicy::default(),
            &RecordedEvents::default(),
        ),
    )
    .await;
    assert_eq!(outcome.unwrap(), UncordonOutcome::Uncordoned);
    assert_eq!(
        recorded[1].body,
        json!({"metadata": {"resourceVersion": "7", "annotations": {"aksup.io/cordoned": null}},
               "spec": {"unschedulable": false}})
    );
}

#[tokio::test(start_paused = true)]
async fn uncordon_keeps_a_cordon_from_before_the_run() {
    let (client, handle) = mock_client();
    let events = RecordedEvents::default();
    let script = vec![Exchange::ok(
        "GET",
        NODE,
        node("k8s-agent-0", true, json!({})),
    )];
    let (outcome, recorded) = run(
        handle,
        script,
        uncordon(&client, &name(), &RetryPolicy::default(), &events),
    )
    .await;
    assert_eq!(outcome.unwrap(), UncordonOutcome::KeptCordoned);
    assert_eq!(recorded.len(), 1, "no patch");
    assert_eq!(
        events.take(),
        vec![NodeEvent::KeptCordoned { node: name() }]
    );

    let (client, handle) = mock_client();
    let script = vec![Exchange::ok(
        "GET",
        NODE,
        node("k8s-agent-0", false, json!({})),
    )];
    let (outcome, _) = run(
        handle,
        script,
        uncordon(&client, &name(), &RetryPolicy::default(), &events),
    )
    .await;
    assert_eq!(outcome.unwrap(), UncordonOutcome::AlreadySchedulable);
}

fn node_status(name: &str, ready: &str, version: &str, resource_version: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "resourceVersion": resource_version},
        "status": {
            "nodeInfo": {"kubeletVersion": version, "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "",
                         "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux",
                         "osImage": "", "systemUUID": ""},
            "conditions": [
                {"type": "Ready", "status": ready, "reason": if ready == "True" { "KubeletReady" } else { "KubeletNotReady" },
                 "message": if ready == "True" { "kubelet is posting ready status" } else { "container runtime network not ready" }},
                {"type": "MemoryPressure", "status": "False"},
            ],
        },
    })
}

fn node_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "20"}, "items": items})
}

#[tokio::test(start_paused = true)]
async fn wait_ready_watches_until_ready_with_the_expected_version() {
    let (client, handle) = mock_client();
    let events = RecordedEvents::default();
    let script = vec![
        Exchange::ok("GET", "/api/v1/nodes", node_list(vec![node_status("k8s-agent-0", "False", "v1.30.4", "19")]))
            .with_query("fieldSelector=metadata.name%3Dk8s-agent-0"),
        Exchange::watch(
            "/api/v1/nodes",
            &[
                // Ready, but still the old kubelet: not enough.
                json!({"type": "MODIFIED", "object": node_status("k8s-agent-0", "True", "v1.29.9", "21")}),
                json!({"type": "MODIFIED", "object": node_status("k8s-agent-0", "True", "v1.30.4", "22")}),
            ],
        )
        .with_query("watch=true"),
    ];
    let node = name();
    let wait = wait_ready(&client, &node, "1.30.4", Duration::from_secs(600), &events);
    let (outcome, _) = run(handle, script, wait).await;
    let ready = outcome.unwrap();
    assert_eq!(ready.kubelet_version, "v1.30.4");
    assert!(events.take().contains(&NodeEvent::NodeReady {
        node: name(),
        kubelet_version: "v1.30.4".into()
    }));
}

#[tokio::test(start_paused = true)]
async fn wait_ready_timeout_reports_the_last_conditions() {
    let (client, handle) = mock_client();
    let script = vec![
        Exchange::ok(
            "GET",
            "/api/v1/nodes",
            node_list(vec![node_status("k8s-agent-0", "False", "v1.30.4", "19")]),
        ),
        Exchange::watch(
            "/api/v1/nodes",
            &[
                json!({"type": "MODIFIED", "object": node_status("k8s-agent-0", "False", "v1.30.4", "21")}),
            ],
        ),
    ];
    let start = tokio::time::Instant::now();
    let (node, events) = (name(), RecordedEvents::default());
    let wait = wait_ready(&client, &node, "v1.30.4", Duration::from_secs(300), &events);
    let server = serve(handle, script);
    let err = wait.await.unwrap_err();
    server.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(300));
    let message = err.to_string();
    assert!(
        message.contains("node k8s-agent-0 was not Ready with kubelet v1.30.4 within 5m"),
        "{message}"
    );
    assert!(
        message.contains("Ready=False (KubeletNotReady: container runtime network not ready)"),
        "{message}"
    );
    assert!(message.contains("MemoryPressure=False"), "{message}");
}

fn full_node(
    name: &str,
    labels: Value,
    annotations: Value,
    taints: Value,
    unschedulable: bool,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "resourceVersion": "30", "labels": labels, "annotations": annotations},
        "spec": {"unschedulable": unschedulable, "taints": taints},
    })
}

fn old_node() -> Value {
    full_node(
        "k8s-agent-0",
        json!({"kubernetes.io/hostname": "k8s-agent-0", "team": "payments", "agentpool": "agent",
               "peer": "k8s-agent-0.internal", "topology.kubernetes.io/zone": "1",
               "node.kubernetes.io/instance-type": "Standard_D2_v2"}),
        json!({"owner": "ops@k8s-agent-0", "node.alpha.kubernetes.io/ttl": "0",
               "volumes.kubernetes.io/controller-managed-attach-detach": "true",
               "projectcalico.org/IPv4Address": "10.240.0.4/16", "aksup.io/cordoned": "true",
               "csi.volume.kubernetes.io/nodeid": "{}"}),
        json!([{"key": "dedicated", "value": "gpu-k8s-agent-0", "effect": "NoSchedule"},
               {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        true,
    )
}

fn new_node(unschedulable: bool, annotations: Value) -> Value {
    full_node(
        "k8s-agent-5",
        json!({"kubernetes.io/hostname": "k8s-agent-5", "agentpool": "agent"}),
        annotations,
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        unschedulable,
    )
}

#[test]
fn plan_copy_substitutes_names_and_excludes_managed_keys() {
    let old: Node = serde_json::from_value(old_node()).unwrap();
    let new: Node = serde_json::from_value(new_node(false, json!({}))).unwrap();
    let plan = copy::plan_copy(&old, &new);
    assert_eq!(
        serde_json::to_value(&plan.labels).unwrap(),
        json!({"peer": "k8s-agent-5.internal", "team": "payments"})
    );
    assert_eq!(
        serde_json::to_value(&plan.annotations).unwrap(),
        json!({"owner": "ops@k8s-agent-5"})
    );
    assert_eq!(
        serde_json::to_value(&plan.taints).unwrap(),
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
               {"key": "dedicated", "value": "gpu-k8s-agent-5", "effect": "NoSchedule"}])
    );
    assert_eq!(
        plan.excluded,
        [
            "aksup.io/cordoned",
            "csi.volume.kubernetes.io/nodeid",
            "kubernetes.io/hostname",
            "node.alpha.kubernetes.io/ttl",
            "node.kubernetes.io/instance-type",
            "projectcalico.org/IPv4Address",
            "topology.kubernetes.io/zone",
            "volumes.kubernetes.io/controller-managed-attach-detach",
        ]
    );
}

#[test]
fn managed_keys_are_listed() {
    for key in [
        "kubernetes.io/hostname",
        "topology.disk.csi.azure.com/zone",
        "aksup.io/replaced-node",
        "beta.kubernetes.io/arch",
    ] {
        assert!(copy::is_managed_key(key), "{key}");
    }
    for key in ["team", "kubernetes.azure.com/role", "example.com/owner"] {
        assert!(!copy::is_managed_key(key), "{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn copy_keeps_the_new_node_cordoned_evicts_and_records_the_replaced_node() {
    let (client, handle) = mock_client();
    let events = RecordedEvents::default();
    let new_path = "/api/v1/nodes/k8s-agent-5";
    let landed = pod("default", "web-1", "u1", "k8s-agent-5");
    let script = vec![
        // cordon the new node
        Exchange::ok("GET", new_path, new_node(false, json!({}))),
        Exchange::ok("GET", new_path, new_node(false, json!({}))),
        Exchange::ok(
            "PATCH",
            new_path,
            new_node(true, json!({keys::CORDONED_BY_AKSUP: "true"})),
        ),
        // evict what landed on it
        Exchange::ok("GET", "/api/v1/pods", pod_list(vec![landed]))
            .with_query("fieldSelector=spec.nodeName%3Dk8s-agent-5"),
        Exchange::new(
            "POST",
            "/api/v1/namespaces/default/pods/web-1/eviction",
            201,
            success(),
        ),
        Exchange::ok("GET", "/api/v1/pods", pod_list(vec![])),
        // copy
        Exchange::ok("GET", NODE, old_node()),
        Exchange::ok(
            "GET",
            new_path,
            new_node(true, json!({keys::CORDONED_BY_AKSUP: "true"})),
        ),
        Exchange::ok(
            "PATCH",
            new_path,
            new_node(true, json!({keys::CORDONED_BY_AKSUP: "true"})),
        ),
        // uncordon
        Exchange::ok(
            "GET",
            new_path,
            new_node(true, json!({keys::CORDONED_BY_AKSUP: "true"})),
        ),
        Exchange::ok("PATCH", new_path, new_node(false, json!({}))),
    ];
    let (old, new, options) = (name(), NodeName::new("k8s-agent-5"), CopyOptions::default());
    let copying = copy::copy_properties(&client, &old, &new, &options, &events);
    let (outcome, recorded) = run(handle, script, copying).await;
    let result = outcome.unwrap();
    assert_eq!(result.evicted_from_new.len(), 1);
    assert_eq!(result.uncordon, UncordonOutcome::Uncordoned);
    assert_eq!(
        recorded[8].body,
        json!({
            "metadata": {
                "resourceVersion": "30",
                "annotations": {"owner": "ops@k8s-agent-5", "aksup.io/replaced-node": "k8s-agent-0"},
                "labels": {"peer": "k8s-agent-5.internal", "team": "payments"},
            },
            "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                                {"key": "dedicated", "value": "gpu-k8s-agent-5", "effect": "NoSchedule"}]},
        })
    );
    assert!(events.take().iter().any(|e| matches!(
        e,
        NodeEvent::PropertiesCopied {
            labels: 2,
            annotations: 1,
            taints: 2,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn copy_without_preserve_only_records_the_replaced_node() {
    let (client, handle) = mock_client();
    let new_path = "/api/v1/nodes/k8s-agent-5";
    let script = vec![
        Exchange::ok("GET", new_path, new_node(false, json!({}))),
        Exchange::ok("GET", new_path, new_node(false, json!({}))),
        Exchange::ok("PATCH", new_path, new_node(true, json!({}))),
        Exchange::ok("GET", "/api/v1/pods", pod_list(vec![])),
        Exchange::ok("GET", NODE, old_node()),
        Exchange::ok(
            "GET",
            new_path,
            new_node(true, json!({keys::CORDONED_BY_AKSUP: "true"})),
        ),
        Exchange::ok("PATCH", new_path, new_node(true, json!({}))),
        Exchange::ok(
            "GET",
            new_path,
            new_node(true, json!({keys::CORDONED_BY_AKSUP: "true"})),
        ),
        Exchange::ok("PATCH", new_path, new_node(false, json!({}))),
    ];
    let options = CopyOptions {
        preserve: false,
        ..CopyOptions::default()
    };
    let (old, new, events) = (
        name(),
        NodeName::new("k8s-agent-5"),
        RecordedEvents::default(),
    );
    let copying = copy::copy_properties(&client, &old, &new, &options, &events);
    let (outcome, recorded) = run(handle, script, copying).await;
    assert!(!outcome.unwrap().preserved);
    assert_eq!(
        recorded[6].body,
        json!({"metadata": {"resourceVersion": "30", "annotations": {"aksup.io/replaced-node": "k8s-agent-0"}}})
    );
}

mod connect {
    use aksup::kube::connect::{
        ApiModelAccess, kubeconfig_from_apimodel, master_server, write_kubeconfig,
    };
    use aksup::model::ApiModel;
    use serde_json::{Value, json};

    const KEY: &str =
        "-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END EC PRIVATE KEY-----";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nY2VydA==\n-----END CERTIFICATE-----";

    fn model(master: Value, extra: Value) -> aksup::model::ContainerService {
        let mut document = json!({
            "apiVersion": "vlabs",
            "location": "local",
            "properties": {
                "orchestratorProfile": {"orchestratorType": "Kubernetes", "orchestratorVersion": "1.30.4"},
                "masterProfile": master,
                "agentPoolProfiles": [],
                "certificateProfile": {"caCertificate": CERT, "kubeConfigCertificate": CERT, "kubeConfigPrivateKey": KEY},
                "customCloudProfile": {"environment": {"resourceManagerVMDNSSuffix": "cloudapp.azurestack.external"}},
            }
        });
        if let (Some(target), Some(extra)) =
            (document["properties"].as_object_mut(), extra.as_object())
        {
            target.extend(extra.clone());
        }
        ApiModel::parse(&document.to_string())
            .unwrap()
            .view()
            .clone()
    }

    #[test]
    fn master_server_prefers_fqdn_then_private_ip_then_dns_name() {
        let none = ApiModelAccess::default();
        let with_fqdn = model(
            json!({"count": 1, "dnsPrefix": "k1", "fqdn": "127.0.0.1:6443"}),
            json!({}),
        );
        assert_eq!(
            master_server(&with_fqdn, &none).unwrap(),
            "https://127.0.0.1:6443"
        );
        let public = model(json!({"count": 1, "dnsPrefix": "k1"}), json!({}));
        assert_eq!(
            master_server(&public, &none).unwrap(),
            "https://k1.local.cloudapp.azurestack.external"
        );
        let private_config = json!({"orchestratorProfile": {"orchestratorType": "Kubernetes", "orchestratorVersion": "1.30.4",
            "kubernetesConfig": {"privateCluster": {"enabled": true}}}});
        let private = model(
            json!({"count": 1, "dnsPrefix": "k1"}),
            private_config.clone(),
        );
        assert_eq!(
            master_server(&private, &none).unwrap(),
            "https://10.240.255.5"
        );
        let private_ip = model(
            json!({"count": 1, "dnsPrefix": "k1", "firstConsecutiveStaticIP": "10.1.0.10"}),
            private_config,
        );
        assert_eq!(
            master_server(&private_ip, &none).unwrap(),
            "https://10.1.0.10"
        );
        let override_server = ApiModelAccess {
            server: Some("jump:6443".into()),
        };
        assert_eq!(
            master_server(&public, &override_server).unwrap(),
            "https://jump:6443"
        );
        let nameless = model(json!({"count": 1}), json!({}));
        let err = master_server(&nameless, &none).unwrap_err().to_string();
        assert!(err.contains("pass --kubeconfig"), "{err}");
    }

    #[test]
    fn kubeconfig_is_built_in_memory_and_written_only_on_request() {
        use base64::Engine;
        let cluster = model(json!({"count": 1, "dnsPrefix": "k1"}), json!({}));
        let text = kubeconfig_from_apimodel(&cluster, &ApiModelAccess::default()).unwrap();
        assert_eq!(format!("{text:?}"), "Secret(<redacted>)");
        let document: Value = serde_json::from_str(text.expose()).unwrap();
        assert_eq!(
            document["clusters"][0]["cluster"]["server"],
            "https://k1.local.cloudapp.azurestack.external"
        );
        let key = document["users"][0]["user"]["client-key-data"]
            .as_str()
            .unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(key)
                .unwrap(),
            KEY.as_bytes()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_kubeconfig(&cluster, &ApiModelAccess::default(), &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn access_is_chosen_flag_then_env_then_apimodel() {
        use aksup::kube::connect::ClusterAccess;
        use std::ffi::OsStr;
        use std::path::PathBuf;
        let apimodel = ApiModelAccess::default();
        let flag = Some(PathBuf::from("/k"));
        let env = Some(OsStr::new("/e"));
        assert_eq!(
            ClusterAccess::choose(flag.clone(), None, env, apimodel.clone()),
            ClusterAccess::Kubeconfig {
                path: flag,
                context: None
            }
        );
        assert_eq!(
            ClusterAccess::choose(None, Some("c".into()), env, apimodel.clone()),
            ClusterAccess::Kubeconfig {
                path: None,
                context: Some("c".into())
            }
        );
        assert_eq!(
            ClusterAccess::choose(None, None, Some(OsStr::new("")), apimodel.clone()),
            ClusterAccess::ApiModel(apimodel.clone())
        );
        assert_eq!(
            ClusterAccess::choose(None, None, None, apimodel.clone()),
            ClusterAccess::ApiModel(apimodel)
        );
    }

    #[tokio::test]
    async fn a_kubeconfig_file_is_read_and_a_missing_one_named() {
        use aksup::kube::connect::config_from_kubeconfig;
        let cluster = model(
            json!({"count": 1, "dnsPrefix": "k1", "fqdn": "10.0.0.1:6443"}),
            json!({}),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_kubeconfig(&cluster, &ApiModelAccess::default(), &path).unwrap();
        let config = config_from_kubeconfig(Some(&path), None).await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://10.0.0.1:6443/");
        let missing = dir.path().join("absent");
        let err = config_from_kubeconfig(Some(&missing), None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read the kubeconfig /"),
            "{err}"
        );
        assert!(err.to_string().ends_with("/absent"), "{err}");
    }

    #[test]
    fn missing_certificates_are_reported_without_secrets() {
        let mut cluster = model(json!({"count": 1, "dnsPrefix": "k1"}), json!({}));
        if let Some(profile) = cluster.properties.certificate_profile.as_mut() {
            profile.kube_config_certificate = "not a certificate".into();
        }
        let err = kubeconfig_from_apimodel(&cluster, &ApiModelAccess::default()).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(
            text.contains("certificateProfile.kubeConfigCertificate is missing or not a PEM block"),
            "{text}"
        );
        assert!(!text.contains("c2VjcmV0"), "{text}");
    }
}

/// The apimodel-built connection over real TLS: the CA from
/// `certificateProfile` is trusted, the client certificate and key load, and
/// `masterProfile.fqdn` (`127.0.0.1:<port>`, as the simulator writes it) is the server.
#[tokio::test]
async fn apimodel_connection_talks_tls_to_the_master_fqdn() {
    use aksup::kube::connect::{ApiModelAccess, ClusterAccess, connect};
    use axum::routing::get;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client".into()]);

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/api/v1/nodes/{name}",
        get(|| async { axum::Json(node("k8s-agent-0", true, json!({}))) }),
    );
    let app = app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(format!(
                    "{} {}",
                    request.method(),
                    request.uri().path()
                ));
                next.run(request).await
            }
        },
    ));
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        server_cert.into_bytes(),
        server_key.into_bytes(),
    )
    .await
    .unwrap();
    let handle = axum_server::Handle::new();
    let server =
        axum_server::bind_rustls("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(), tls)
            .handle(handle.clone())
            .serve(app.into_make_service());
    tokio::spawn(server);
    let address = handle.listening().await.unwrap();

    let document = json!({
        "apiVersion": "vlabs", "location": "local",
        "properties": {
            "orchestratorProfile": {"orchestratorType": "Kubernetes", "orchestratorVersion": "1.30.4"},
            "masterProfile": {"count": 1, "dnsPrefix": "k1", "fqdn": format!("127.0.0.1:{}", address.port())},
            "agentPoolProfiles": [],
            "certificateProfile": {"caCertificate": ca.pem(), "kubeConfigCertificate": client_cert,
                                   "kubeConfigPrivateKey": client_key},
        }
    });
    let model = aksup::model::ApiModel::parse(&document.to_string()).unwrap();
    let client = connect(
        &ClusterAccess::ApiModel(ApiModelAccess::default()),
        Some(model.view()),
    )
    .await
    .unwrap();
    let outcome = cordon(
        &client,
        &name(),
        &RetryPolicy::default(),
        &RecordedEvents::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcome, CordonOutcome::AlreadyCordoned { by_aksup: false });
    assert_eq!(*seen.lock().unwrap(), ["GET /api/v1/nodes/k8s-agent-0"]);
    handle.shutdown();
}

#[tokio::test(start_paused = true)]
async fn wait_ready_waits_for_a_node_that_has_not_registered_yet() {
    let (client, handle) = mock_client();
    let script = vec![
        Exchange::ok("GET", "/api/v1/nodes", node_list(vec![])),
        Exchange::watch(
            "/api/v1/nodes",
            &[
                json!({"type": "ADDED", "object": node_status("k8s-agent-0", "True", "1.30.4", "21")}),
            ],
        ),
    ];
    let node = name();
    let events = RecordedEvents::default();
    let (outcome, _) = run(
        handle,
        script,
        wait_ready(&client, &node, "v1.30.4", Duration::from_secs(60), &events),
    )
    .await;
    assert_eq!(outcome.unwrap().kubelet_version, "1.30.4");
}

#[tokio::test(start_paused = true)]
async fn the_replaced_node_is_read_back_for_resume() {
    let (client, handle) = mock_client();
    let new_path = "/api/v1/nodes/k8s-agent-5";
    let script = vec![
        Exchange::ok(
            "GET",
            new_path,
            new_node(false, json!({keys::REPLACED_NODE: "k8s-agent-0"})),
        ),
        Exchange::ok("GET", new_path, new_node(false, json!({}))),
        Exchange::fail("GET", new_path, 404, "NotFound", "not found"),
    ];
    let new = NodeName::new("k8s-agent-5");
    let lookups = async {
        let mut found = Vec::new();
        for _ in 0..3 {
            found.push(copy::replaced_node_of(&client, &new).await.unwrap());
        }
        found
    };
    let (found, _) = run(handle, script, lookups).await;
    assert_eq!(found, vec![Some(name()), None, None]);
}

#[test]
fn copy_options_follow_the_pool_setting() {
    let pool = |extra: Value| -> aksup::model::AgentPoolProfile {
        let mut value = json!({"name": "agent", "count": 2, "vmSize": "Standard_D2_v2"});
        if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            target.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    };
    let drain = aksup::kube::DrainOptions::default();
    assert!(CopyOptions::for_pool(&pool(json!({})), drain.clone()).preserve);
    assert!(
        !CopyOptions::for_pool(
            &pool(json!({"preserveNodesProperties": false})),
            drain.clone()
        )
        .preserve
    );
    assert!(CopyOptions::for_pool(&pool(json!({"preserveNodesProperties": true})), drain).preserve);
}

#[tokio::test(start_paused = true)]
async fn a_copy_completed_by_a_previous_run_is_left_alone() {
    let (client, handle) = mock_client();
    let new_path = "/api/v1/nodes/k8s-agent-5";
    let script = vec![Exchange::ok(
        "GET",
        new_path,
        new_node(false, json!({keys::REPLACED_NODE: "k8s-agent-0"})),
    )];
    let (old, new, events) = (
        name(),
        NodeName::new("k8s-agent-5"),
        RecordedEvents::default(),
    );
    let options = CopyOptions::default();
    let (outcome, _) = run(
        handle,
        script,
        copy::copy_properties(&client, &old, &new, &options, &events),
    )
    .await;
    let result = outcome.unwrap();
    assert!(result.already_done);
    assert!(result.evicted_from_new.is_empty());
    assert_eq!(
        events.take(),
        vec![NodeEvent::PropertiesAlreadyCopied { from: old, to: new }]
    );
}

#[tokio::test(start_paused = true)]
async fn a_copy_interrupted_before_the_uncordon_is_finished_without_patching_again() {
    let (client, handle) = mock_client();
    let new_path = "/api/v1/nodes/k8s-agent-5";
    // The previous run wrote everything, then died before uncordoning.
    let copied = full_node(
        "k8s-agent-5",
        json!({"kubernetes.io/hostname": "k8s-agent-5", "agentpool": "agent", "peer": "k8s-agent-5.internal",
               "team": "payments"}),
        json!({"owner": "ops@k8s-agent-5", keys::REPLACED_NODE: "k8s-agent-0", keys::CORDONED_BY_AKSUP: "true"}),
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
               {"key": "dedicated", "value": "gpu-k8s-agent-5", "effect": "NoSchedule"}]),
        true,
    );
    let script = vec![
        Exchange::ok("GET", new_path, copied.clone()),
        Exchange::ok("GET", new_path, copied.clone()),
        Exchange::ok("GET", "/api/v1/pods", pod_list(vec![])),
        Exchange::ok("GET", NODE, old_node()),
        Exchange::ok("GET", new_path, copied.clone()),
        // no copy patch: nothing changes
        Exchange::ok("GET", new_path, copied),
        Exchange::ok("PATCH", new_path, new_node(false, json!({}))),
    ];
    let (old, new, events) = (
        name(),
        NodeName::new("k8s-agent-5"),
        RecordedEvents::default(),
    );
    let options = CopyOptions::default();
    let (outcome, recorded) = run(
        handle,
        script,
        copy::copy_properties(&client, &old, &new, &options, &events),
    )
    .await;
    let result = outcome.unwrap();
    assert!(!result.already_done);
    assert_eq!(result.uncordon, UncordonOutcome::Uncordoned);
    assert_eq!(
        recorded.iter().filter(|r| r.method == "PATCH").count(),
        1,
        "only the uncordon"
    );
}
