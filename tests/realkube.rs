//! The real-Kubernetes tier: facts about a real kube-apiserver (with etcd, controller manager,
//! scheduler and kwok) that aksup and its simulator depend on.
//!
//! Skipped with a visible message unless `AKSUP_TESTBED_BIN` names the directory printed by
//! `scripts/testbed/build.sh`. One control plane serves all tests of this binary; each test works
//! in namespaces and on nodes of its own.
//!
//! Fixtures under `tests/fixtures/realkube/` record what the real server and kubectl did; a test
//! fails when they change. Regenerate them with `AKSUP_TESTBED_UPDATE_FIXTURES=1`.

#[path = "common/realkube.rs"]
mod realkube;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::{Eviction, PodDisruptionBudget};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, PostParams};
use realkube::{KwokNode, testbed};
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/realkube")
        .join(name)
}

/// Compares `actual` with the committed fixture `name` (or writes it when
/// `AKSUP_TESTBED_UPDATE_FIXTURES=1`).
fn check_fixture(name: &str, actual: &serde_json::Value) -> Result<()> {
    let path = fixture_path(name);
    let rendered = serde_json::to_string_pretty(actual)? + "\n";
    if std::env::var_os("AKSUP_TESTBED_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().context("fixture dir")?)?;
        std::fs::write(&path, rendered)?;
        eprintln!("wrote {}", path.display());
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (create it with AKSUP_TESTBED_UPDATE_FIXTURES=1)",
            path.display()
        )
    })?;
    let expected: serde_json::Value = serde_json::from_str(&expected)?;
    if &expected != actual {
        bail!(
            "the real server / kubectl no longer matches {}:\nexpected:\n{}\nactual:\n{rendered}",
            path.display(),
            serde_json::to_string_pretty(&expected)?
        );
    }
    Ok(())
}

fn selector(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn api_error(e: kube::Error) -> Result<Box<kube::core::Status>> {
    match e {
        kube::Error::Api(status) => Ok(status),
        other => bail!("expected an API error status, got: {other}"),
    }
}

/// kubectl lists the reasons of a refused drain ("... due to error: [cannot delete A: p, cannot
/// delete B: q], ...") and the parts of its drain warning ("Warning: a: p; b: q") in no fixed
/// order: sort them.
fn sort_error_list(line: &str) -> String {
    if let Some(parts) = line.strip_prefix("Warning: ") {
        let mut parts: Vec<&str> = parts.split("; ").collect();
        parts.sort();
        return format!("Warning: {}", parts.join("; "));
    }
    let (Some(open), Some(close)) = (line.find("[cannot delete "), line.rfind(']')) else {
        return line.to_string();
    };
    let inner = &line[open + 1..close];
    let mut pieces = inner.split(", cannot delete ");
    let mut items: Vec<String> = pieces.next().map(str::to_string).into_iter().collect();
    items.extend(pieces.map(|item| format!("cannot delete {item}")));
    items.sort();
    format!(
        "{}[{}]{}",
        &line[..open],
        items.join(", "),
        &line[close + 1..]
    )
}

#[test]
fn kubectl_error_lists_are_sorted() {
    let a = "error: x: [cannot delete B (b): ns/q, cannot delete A (a): ns/p, ns/r], continuing";
    assert_eq!(
        sort_error_list(a),
        "error: x: [cannot delete A (a): ns/p, ns/r, cannot delete B (b): ns/q], continuing"
    );
    // kubectl's own doubled prefix survives, wherever the item stands
    let b = "e: [cannot delete X: ns/x, cannot delete cannot delete Y: ns/y]";
    let c = "e: [cannot delete cannot delete Y: ns/y, cannot delete X: ns/x]";
    assert_eq!(sort_error_list(b), sort_error_list(c));
    assert_eq!(
        sort_error_list(b),
        "e: [cannot delete X: ns/x, cannot delete cannot delete Y: ns/y]"
    );
    assert_eq!(
        sort_error_list("Warning: b: ns/q; a: ns/p"),
        "Warning: a: ns/p; b: ns/q"
    );
    assert_eq!(sort_error_list("no list here"), "no list here");
}

#[tokio::test]
async fn smoke_kwok_nodes_deployment_and_pdb_status() -> Result<()> {
    let Some(tb) = testbed() else { return Ok(()) };
    let client = tb.client()?;
    let ns = "smoke";
    tb.create_namespace(&client, ns).await?;
    for name in ["kwok-smoke-0", "kwok-smoke-1"] {
        let spec = KwokNode::new(name).label("pool", "smoke");
        tb.create_kwok_node(&client, &spec).await?;
    }
    for name in ["kwok-smoke-0", "kwok-smoke-1"] {
        let node = tb.wait_node_ready(&client, name, MINUTE).await?;
        let info = node.status.and_then(|s| s.node_info).context("nodeInfo")?;
        // kwok keeps the kubelet version the node was registered with
        assert_eq!(info.kubelet_version, "v1.35.4", "node {name}");
    }

    tb.create_deployment(&client, ns, "web", 3, &selector(&[("pool", "smoke")]))
        .await?;
    let pods = tb
        .wait_pods_running(&client, ns, "app=web", 3, 2 * MINUTE)
        .await?;
    for pod in &pods {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        assert!(
            node.as_deref()
                .is_some_and(|n| n.starts_with("kwok-smoke-")),
            "pod {:?} scheduled to {node:?}",
            pod.metadata.name
        );
        assert!(
            pod.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .is_some(),
            "kwok gives running pods an IP"
        );
    }

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
    }))?;
    pdbs.create(&PostParams::default(), &pdb).await?;
    let status = tb
        .wait_for_ok("PDB status from the disruption controller", MINUTE, || {
            let pdbs = pdbs.clone();
            async move {
                let pdb = pdbs.get("web").await?;
                Ok(pdb.status.filter(|s| {
                    s.observed_generation == pdb.metadata.generation && s.expected_pods == Some(3)
                }))
            }
        })
        .await?;
    assert_eq!(status.current_healthy, Some(3));
    assert_eq!(status.desired_healthy, Some(2));
    assert_eq!(status.disruptions_allowed, Some(1));
    Ok(())
}

/// A node whose heartbeats stop (kwok lets go of it, as when its VM is deleted) goes NotReady:
/// what the node lifecycle controller writes.
#[tokio::test]
async fn node_without_heartbeats_goes_not_ready() -> Result<()> {
    let Some(tb) = testbed() else { return Ok(()) };
    let client = tb.client()?;
    let name = "kwok-gone-0";
    tb.create_kwok_node(&client, &KwokNode::new(name)).await?;
    tb.wait_node_ready(&client, name, MINUTE).await?;
    tb.release_kwok_node(&client, name).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = tb
        .wait_for_ok(
            "node NotReady after its heartbeats stop",
            2 * MINUTE,
            || {
                let nodes = nodes.clone();
                async move {
                    let node = nodes.get(name).await?;
                    let unreachable = node
                        .spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_some_and(|ts| {
                            ts.iter().any(|t| t.key == "node.kubernetes.io/unreachable")
                        });
                    Ok((!realkube::node_ready(&node) && unreachable).then_some(node))
                }
            },
        )
        .await?;
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Ready"))
        .context("Ready condition")?;
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    // The NoSchedule taint comes with the condition; the NoExecute one (taint-based eviction)
    // follows through a rate-limited queue, so it is not waited for here.
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    Ok(())
}

/// Settles the kube-rs eviction body question against the real server: which of the two ways of
/// sending a grace-period override does the server honour?
#[tokio::test]
async fn eviction_grace_period_override() -> Result<()> {
    let Some(tb) = testbed() else { return Ok(()) };
    let client = tb.client()?;
    let ns = "eviction";
    tb.create_namespace(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // Bound to a node no kubelet (and no kwok) serves: a deleted pod stays Terminating with its
    // deletionGracePeriodSeconds visible instead of being removed at once.
    for name in ["via-evict", "via-subresource", "via-default"] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "nodeName": "unmanaged-node",
                "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "main", "image": "registry.invalid/aksup-test:1"}],
            },
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }

    // 1. kube-rs 5's own helper.
    let ep = EvictParams {
        delete_options: Some(DeleteParams {
            grace_period_seconds: Some(7),
            ..Default::default()
        }),
        ..Default::default()
    };
    let st = pods.evict("via-evict", &ep).await?;
    assert_eq!(st.code, 201, "{st:?}");

    // 2. An Eviction body sent with create_subresource.
    let ev = Eviction {
        metadata: ObjectMeta {
            name: Some("via-subresource".into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        delete_options: Some(DeleteOptions {
            grace_period_seconds: Some(7),
            ..Default::default()
        }),
    };
    let body = serde_json::to_value(&ev)?;
    assert_eq!(body["apiVersion"], "policy/v1");
    assert_eq!(body["kind"], "Eviction");
    assert_eq!(body["deleteOptions"]["gracePeriodSeconds"], 7);
    let st: kube::core::Status = pods
        .create_subresource("eviction", "via-subresource", &PostParams::default(), &ev)
        .await?;
    assert_eq!(st.code, 201, "{st:?}");

    // 3. No override at all, for comparison.
    pods.evict("via-default", &EvictParams::default()).await?;

    let mut observed = BTreeMap::new();
    for name in ["via-evict", "via-subresource", "via-default"] {
        let pod = pods.get(name).await?;
        assert!(
            pod.metadata.deletion_timestamp.is_some(),
            "{name} is terminating"
        );
        observed.insert(name, pod.metadata.deletion_grace_period_seconds);
    }
    // The finding (also written in docs/testing.md): the server ignores kube-rs 5's
    // `{"delete_options": ..}` body and uses the pod's terminationGracePeriodSeconds; it honours
    // the `deleteOptions` of a proper policy/v1 Eviction body.
    assert_eq!(
        observed["via-evict"],
        Some(30),
        "kube-rs evict(): {observed:?}"
    );
    assert_eq!(
        observed["via-subresource"],
        Some(7),
        "create_subresource: {observed:?}"
    );
    assert_eq!(
        observed["via-default"],
        Some(30),
        "no override: {observed:?}"
    );

    for name in ["via-evict", "via-subresource", "via-default"] {
        pods.delete(
            name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(())
}

/// A PodDisruptionBudget that allows no disruption: what the real server answers to an eviction
/// (the simulator must answer the same), and that the eviction goes through once the budget allows.
#[tokio::test]
async fn pdb_blocked_eviction_facts() -> Result<()> {
    let Some(tb) = testbed() else { return Ok(()) };
    let client = tb.client()?;
    let ns = "pdb-facts";
    let node = "kwok-pdb-0";
    tb.create_namespace(&client, ns).await?;
    tb.create_kwok_node(&client, &KwokNode::new(node)).await?;
    tb.wait_node_ready(&client, node, MINUTE).await?;
    let on_node = selector(&[("kubernetes.io/hostname", node)]);
    tb.create_deployment(&client, ns, "web", 2, &on_node)
        .await?;
    let running = tb
        .wait_pods_running(&client, ns, "app=web", 2, 2 * MINUTE)
        .await?;
    let victim = running[0].metadata.name.clone().context("pod name")?;

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web-pdb"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
    }))?;
    pdbs.create(&PostParams::default(), &pdb).await?;
    let wait_allowed = |allowed: i32| {
        let pdbs = pdbs.clone();
        async move {
            tb.wait_for_ok(
                &format!("web-pdb disruptionsAllowed={allowed}"),
                2 * MINUTE,
                || {
                    let pdbs = pdbs.clone();
                    async move {
                        let pdb = pdbs.get("web-pdb").await?;
                        Ok(pdb
                            .status
                            .filter(|s| {
                                s.observed_generation == pdb.metadata.generation
                                    && s.disruptions_allowed == Some(allowed)
                            })
                            .map(|_| ()))
                    }
                },
            )
            .await
        }
    };
    wait_allowed(0).await?;

    let eviction = |name: &str| Eviction {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        },
        delete_options: None,
    };

    // kube 5's default client retries 429 answers (up to 15 times, exponential backoff from 5 ms
    // up to minutes): a PDB-blocked eviction does not come back for minutes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let with_default_retry = tokio::time::timeout(
        Duration::from_secs(5),
        pods.create_subresource::<_, kube::core::Status>(
            "eviction",
            &victim,
            &PostParams::default(),
            &eviction(&victim),
        ),
    )
    .await;
    assert!(
        with_default_retry.is_err(),
        "kube 5's default retry no longer hides the 429: {with_default_retry:?}"
    );

    // With `default_retry = false` the 429 comes back at once.
    let mut cfg = tb.config()?;
    cfg.default_retry = false;
    let no_retry = kube::Client::try_from(cfg)?;
    let pods: Api<Pod> = Api::namespaced(no_retry.clone(), ns);
    let refused = api_error(
        tokio::time::timeout(
            Duration::from_secs(20),
            pods.create_subresource::<_, kube::core::Status>(
                "eviction",
                &victim,
                &PostParams::default(),
                &eviction(&victim),
            ),
        )
        .await
        .context("an eviction without client retries answers at once")?
        .expect_err("the PDB allows no disruption"),
    )?;
    assert_eq!(refused.code, 429, "{refused:?}");
    // The raw answer: does it carry Retry-After?
    let raw = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{victim}/eviction"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&eviction(&victim))?)?;
    let raw = no_retry.send(raw.map(Into::into)).await?;
    let raw_status = raw.status().as_u16();
    let retry_after = raw
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(raw_status, 429);
    assert!(
        pods.get(&victim)
            .await?
            .metadata
            .deletion_timestamp
            .is_none(),
        "a refused eviction leaves the pod alone"
    );

    // One more replica: the budget allows one disruption and the same eviction goes through.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns);
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    if let Err(e) = wait_allowed(1).await {
        let pdb = pdbs.get("web-pdb").await?;
        let list = pods.list(&ListParams::default()).await?;
        let summary: Vec<String> = list
            .items
            .iter()
            .map(|p| {
                format!(
                    "{:?} node={:?} phase={:?} deleting={}",
                    p.metadata.name,
                    p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    p.status.as_ref().and_then(|s| s.phase.clone()),
                    p.metadata.deletion_timestamp.is_some()
                )
            })
            .collect();
        bail!("{e:#}\nPDB status: {:?}\npods: {summary:#?}", pdb.status);
    }
    let accepted: kube::core::Status = pods
        .create_subresource(
            "eviction",
            &victim,
            &PostParams::default(),
            &eviction(&victim),
        )
        .await?;

    let mut refused_json = serde_json::to_value(&*refused)?;
    let text = serde_json::to_string(&refused_json)?.replace(&victim, "<pod>");
    refused_json = serde_json::from_str(&text)?;
    let facts = json!({
        "pdb": "minAvailable 2 over a Deployment of 2 Running pods (disruptionsAllowed 0)",
        "eviction_refused": refused_json,
        "eviction_refused_http": {"status": raw_status, "retry_after_header": retry_after},
        "kube5_default_client_retries_429": true,
        "after_scaling_to_3_eviction_answer": {"code": accepted.code, "status": accepted.status},
    });
    check_fixture("pdb-eviction.json", &facts)
}

/// Lease lock contention between two clients (two users), as the simulator must reproduce it.
#[tokio::test]
async fn lease_contention_facts() -> Result<()> {
    let Some(tb) = testbed() else { return Ok(()) };
    let a = tb.client_for("aksup-admin")?;
    let b = tb.client_for("aksup-other")?;
    let ns = "lease-facts";
    tb.create_namespace(&a, ns).await?;
    const T0: &str = "2026-11-22T03:00:00.000000Z";
    const T1: &str = "2026-11-22T03:00:10.000000Z";
    const T2: &str = "2026-11-22T03:00:20.000000Z";
    let leases_a: Api<Lease> = Api::namespaced(a, ns);
    let leases_b: Api<Lease> = Api::namespaced(b, ns);
    let lease = |holder: &str, renew: &str, rv: Option<String>| -> Result<Lease> {
        let mut l: Lease = serde_json::from_value(json!({
            "metadata": {"name": "aksup-upgrade"},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 60,
                "acquireTime": "2026-11-22T03:00:00.000000Z",
                "renewTime": renew,
                "leaseTransitions": 0,
            },
        }))?;
        l.metadata.resource_version = rv;
        Ok(l)
    };

    let created = leases_a
        .create(&PostParams::default(), &lease("a", T0, None)?)
        .await?;
    let rv1 = created
        .metadata
        .resource_version
        .clone()
        .context("resourceVersion")?;

    let second_create = api_error(
        leases_b
            .create(&PostParams::default(), &lease("b", T0, None)?)
            .await
            .expect_err("a second create of the same lease must fail"),
    )?;

    // An update that changes nothing is a no-op: same resourceVersion.
    let unchanged = leases_a
        .replace(
            "aksup-upgrade",
            &PostParams::default(),
            &lease("a", T0, Some(rv1.clone()))?,
        )
        .await?;
    let noop_keeps_rv = unchanged.metadata.resource_version.as_deref() == Some(rv1.as_str());
    let renewed = leases_a
        .replace(
            "aksup-upgrade",
            &PostParams::default(),
            &lease("a", T1, Some(rv1.clone()))?,
        )
        .await?;
    let rv2 = renewed
        .metadata
        .resource_version
        .clone()
        .context("resourceVersion")?;
    assert_ne!(rv1, rv2, "an update changes the resourceVersion");

    let stale_update = api_error(
        leases_b
            .replace(
                "aksup-upgrade",
                &PostParams::default(),
                &lease("b", T1, Some(rv1.clone()))?,
            )
            .await
            .expect_err("an update with a stale resourceVersion must fail"),
    )?;

    let stale_delete = api_error(
        leases_b
            .delete(
                "aksup-upgrade",
                &DeleteParams::default().preconditions(kube::api::Preconditions {
                    resource_version: Some(rv1.clone()),
                    uid: None,
                }),
            )
            .await
            .expect_err("a delete with a stale resourceVersion precondition must fail"),
    )?;

    // An update without a resourceVersion is unconditional for leases.
    let unconditional = leases_b
        .replace(
            "aksup-upgrade",
            &PostParams::default(),
            &lease("b", T2, None)?,
        )
        .await;
    let unconditional_holder = match &unconditional {
        Ok(l) => {
            json!({"accepted": true, "holderIdentity": l.spec.as_ref().and_then(|s| s.holder_identity.clone())})
        }
        Err(kube::Error::Api(s)) => {
            json!({"accepted": false, "code": s.code, "reason": s.reason, "message": s.message})
        }
        Err(e) => bail!("unexpected error: {e}"),
    };

    // resourceVersions differ from run to run: name them
    let status_json = |s: &kube::core::Status| {
        json!({
            "code": s.code,
            "reason": s.reason,
            "message": s.message
                .replace(&format!("({rv1})"), "(<stale resourceVersion>)")
                .replace(&format!("({rv2})"), "(<current resourceVersion>)"),
            "status": s.status,
        })
    };
    let facts = json!({
        "lease": "coordination.k8s.io/v1 Lease lease-facts/aksup-upgrade",
        "second_create_by_other_user": status_json(&second_create),
        "update_with_stale_resource_version": status_json(&stale_update),
        "delete_with_stale_resource_version_precondition": status_json(&stale_delete),
        "update_without_resource_version": unconditional_holder,
        "update_changing_nothing_keeps_resource_version": noop_keeps_rv,
    });
    assert_eq!(second_create.code, 409);
    assert_eq!(second_create.reason, "AlreadyExists");
    assert_eq!(stale_update.code, 409);
    assert_eq!(stale_update.reason, "Conflict");
    check_fixture("lease-contention.json", &facts)
}

/// What `kubectl drain` decides for DaemonSet, mirror, emptyDir, bare and replicated pods,
/// recorded as a machine-readable fixture for aksup's drain parity test.
#[tokio::test]
async fn kubectl_drain_decisions() -> Result<()> {
    let Some(tb) = testbed() else { return Ok(()) };
    let client = tb.client()?;
    let ns = "drain-parity";
    let node = "kwok-drain-a";
    tb.create_namespace(&client, ns).await?;
    tb.create_kwok_node(&client, &KwokNode::new(node).label("pool", "drain"))
        .await?;
    tb.wait_node_ready(&client, node, MINUTE).await?;
    let on_a = selector(&[("kubernetes.io/hostname", node)]);
    let pool = selector(&[("pool", "drain")]);

    // role=daemonset
    tb.create_daemonset(&client, ns, "ds", &pool).await?;
    // role=replicated (Deployment, 2 replicas)
    tb.create_deployment(&client, ns, "web", 2, &pool).await?;
    // role=emptydir: a Deployment pod with an emptyDir volume
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns);
    let mut template = realkube::pod_template("cache", &on_a);
    template["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    template["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "scratch", "mountPath": "/scratch"}]);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "cache"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "cache"}}, "template": template},
            }))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // role=bare: no controller
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "bare", "labels": {"app": "bare"}},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "registry.invalid/aksup-test:1"}]},
        }))?,
    )
    .await?;
    // role=mirror: what a kubelet creates for a static pod
    let node_uid = Api::<Node>::all(client.clone())
        .get(node)
        .await?
        .metadata
        .uid
        .context("node uid")?;
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {
                "name": format!("static-{node}"),
                "labels": {"app": "static"},
                "annotations": {"kubernetes.io/config.mirror": "0123456789abcdef", "kubernetes.io/config.source": "file"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true}],
            },
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "registry.invalid/aksup-test:1"}]},
        }))?,
    )
    .await?;
    for (app, n) in [("ds", 1), ("web", 2), ("cache", 1), ("bare", 1)] {
        tb.wait_pods_running(&client, ns, &format!("app={app}"), n, 2 * MINUTE)
            .await?;
    }
    // pod name -> role
    let roles: BTreeMap<String, &str> = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| {
            let app = p.metadata.labels.as_ref()?.get("app")?.clone();
            let role = match app.as_str() {
                "ds" => "daemonset",
                "web" => "replicated",
                "cache" => "emptydir",
                "bare" => "bare",
                "static" => "mirror",
                _ => return None,
            };
            Some((p.metadata.name?, role))
        })
        .collect();
    assert_eq!(roles.len(), 6, "{roles:?}");
    // a spare node for the replacements
    tb.create_kwok_node(
        &client,
        &KwokNode::new("kwok-drain-b").label("pool", "drain"),
    )
    .await?;
    tb.wait_node_ready(&client, "kwok-drain-b", MINUTE).await?;

    let run = |args: &[&str]| -> Result<(i32, String)> {
        let out = tb
            .kubectl()
            .arg("drain")
            .arg(node)
            .args(args)
            .output()
            .context("running kubectl")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.code().unwrap_or(-1), text))
    };

    // 1. No flags: kubectl refuses, naming a reason per pod.
    let (refused_code, refused_out) = run(&["--timeout=60s"])?;
    let cordoned_after_refusal = Api::<Node>::all(client.clone())
        .get(node)
        .await?
        .spec
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    // 2. The flags aksup's drain corresponds to.
    let forced_flags = [
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--grace-period=-1",
        "--timeout=120s",
    ];
    let (forced_code, forced_out) = run(&forced_flags)?;
    let remaining: Vec<String> = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();

    // Pod names carry random suffixes: name every pod by its role instead, sort the lines
    // (evictions run concurrently, so their order varies).
    let normalize = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut l = l.replace(node, "<node>");
                for (pod, role) in &roles {
                    l = l
                        .replace(&format!("{ns}/{pod}"), &format!("{ns}/<{role}>"))
                        .replace(&format!("pod/{pod} "), &format!("pod/<{role}> "));
                }
                sort_error_list(&l)
            })
            .collect();
        lines.sort();
        lines.dedup();
        lines
    };
    let refused_lines = normalize(&refused_out);
    let forced_lines = normalize(&forced_out);
    let mut per_role: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for (pod, role) in &roles {
        let tag = format!("{ns}/<{role}>");
        // the reason kubectl gives when refusing: "cannot delete <reason>: ns/a, ns/b"
        let refusal = refused_lines.iter().find_map(|l| {
            let at = l.find(&tag)?;
            let start = l[..at].rfind("cannot delete ")?;
            let reason = &l[start..];
            Some(reason[..reason.find(": ")?].to_string())
        });
        let forced = if forced_lines.contains(&format!("pod/<{role}> evicted")) {
            "evicted"
        } else if forced_lines
            .iter()
            .any(|l| l.contains(&format!("ignoring DaemonSet-managed Pods: {tag}")))
        {
            "ignored as DaemonSet-managed"
        } else if forced_lines.iter().any(|l| l.contains(&tag)) {
            "mentioned, not evicted"
        } else {
            "not mentioned, not evicted"
        };
        per_role.insert(
            role,
            json!({
                "refused_without_flags_because": refusal,
                "with_flags": forced,
                "still_on_node_after_drain": remaining.contains(pod),
            }),
        );
    }

    let facts = json!({
        "kubectl": "v1.35.4 (built by scripts/testbed/build.sh)",
        "pods_on_node": {
            "bare": "a pod with no controller",
            "daemonset": "a DaemonSet's pod",
            "emptydir": "a Deployment's pod with an emptyDir volume",
            "mirror": "a mirror pod (annotation kubernetes.io/config.mirror, owned by the Node)",
            "replicated": "a Deployment's pods (2)",
        },
        "without_flags": {
            "args": ["drain", "<node>", "--timeout=60s"],
            "exit_code": refused_code,
            "node_cordoned_even_though_refused": cordoned_after_refusal,
            "output": refused_lines,
        },
        "with_flags": {
            "args": std::iter::once("drain").chain(std::iter::once("<node>")).chain(forced_flags).collect::<Vec<_>>(),
            "exit_code": forced_code,
            "output": forced_lines,
        },
        "decisions": per_role,
    });
    if let Err(e) = check_fixture("kubectl-drain-decisions.json", &facts) {
        bail!(
            "{e:#}\n--- kubectl without flags:\n{refused_out}\n--- kubectl forced:\n{forced_out}"
        );
    }
    assert_eq!(refused_code, 1);
    assert_eq!(forced_code, 0);
    Ok(())
}

#[test]
fn skip_reason_tells_how_to_enable_the_tier() {
    let unset = realkube::check_bin_dir(None).expect_err("unset variable");
    assert!(unset.contains("AKSUP_TESTBED_BIN is not set"), "{unset}");
    assert!(unset.contains("scripts/testbed/build.sh"), "{unset}");

    let dir = tempfile::tempdir().expect("temp dir");
    for b in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
    ] {
        std::fs::write(dir.path().join(b), "").expect("write");
    }
    let missing = realkube::check_bin_dir(Some(dir.path().as_os_str())).expect_err("no kwok");
    assert!(missing.contains("kwok is missing"), "{missing}");

    std::fs::write(dir.path().join("kwok"), "").expect("write");
    assert_eq!(
        realkube::check_bin_dir(Some(dir.path().as_os_str())),
        Ok(dir.path().to_path_buf())
    );
}
