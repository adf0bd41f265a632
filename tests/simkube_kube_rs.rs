//! The simulated Kubernetes API judged by kube-rs 5 over TLS.

#[path = "simkube_support/mod.rs"]
mod support;

use std::time::Duration;

use aksup::sim::kube::{KubeSimOptions, Scenario};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::{Eviction, PodDisruptionBudget};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use support::{Cluster, serve, wait_for};

fn options() -> KubeSimOptions {
    KubeSimOptions {
        lost_pod_eviction_delay: Duration::from_secs(30),
        ..KubeSimOptions::default()
    }
}

fn web_scenario() -> Scenario {
    Scenario::from_json(
        r#"{
        "daemonSets": [{"namespace": "kube-system", "name": "kube-proxy", "tolerations": [{"operator": "Exists"}]}],
        "deployments": [{"namespace": "shop", "name": "web", "replicas": 3},
                        {"namespace": "shop", "name": "worker", "replicas": 2}],
        "pods": [{"namespace": "shop", "name": "debug"}],
        "podDisruptionBudgets": [{"namespace": "shop", "name": "web", "selector": {"app": "web"}, "minAvailable": 2}]
    }"#,
    )
    .unwrap()
}

async fn cluster() -> Cluster {
    let c = serve(100.0, options()).await;
    c.seed(3, &web_scenario());
    c.settle().await;
    c
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_list_get_and_discovery_work_in_kube_rs() {
    let c = cluster().await;
    let client = c.client();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.24.17");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "24")
    );

    let nodes: Api<Node> = Api::all(client.clone());
    let all = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 4);
    let agents = nodes
        .list(&ListParams::default().labels("kubernetes.io/role=agent"))
        .await
        .unwrap();
    assert_eq!(agents.items.len(), 3);
    let not_masters = nodes
        .list(&ListParams::default().labels("!node-role.kubernetes.io/master"))
        .await
        .unwrap();
    assert_eq!(not_masters.items.len(), 3);
    let one = nodes
        .list(&ListParams::default().fields("metadata.name=k8s-agentpool-12345678-1"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let paged = nodes.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(paged.items.len(), 3);
    let rest = nodes
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(paged.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);

    let master = nodes.get("k8s-master-12345678-0").await.unwrap();
    let status = master.status.unwrap();
    let info = status.node_info.unwrap();
    assert_eq!(info.kubelet_version, "v1.24.17");
    assert_eq!(info.os_image, "Ubuntu 18.04.6 LTS");
    assert_eq!(info.operating_system, "linux");
    let addresses = status.addresses.unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == "10.240.255.5")
    );
    assert_eq!(status.capacity.unwrap()["cpu"].0, "2");
    assert!(status.allocatable.unwrap().contains_key("memory"));
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    let taints = master.spec.unwrap().taints.unwrap();
    assert_eq!(
        taints.len(),
        1,
        "only the master taint once Ready: {taints:?}"
    );
    assert_eq!(
        master.metadata.labels.unwrap()["kubernetes.io/hostname"],
        "k8s-master-12345678-0"
    );

    let missing = api_error(nodes.get("nope").await);
    assert_eq!(missing.code, 404);
    assert_eq!(missing.reason, "NotFound");
    assert_eq!(missing.message, "nodes \"nope\" not found");

    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for expected in ["", "apps", "policy", "coordination.k8s.io"] {
        assert!(groups.contains(&expected.to_string()), "{groups:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_patches_updates_and_conflicts_behave_as_a_real_server() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client());
    let name = "k8s-agentpool-12345678-0";

    let cordoned = nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    assert_eq!(cordoned.spec.as_ref().unwrap().unschedulable, Some(true));
    let labelled = nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"upgrade": "next"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.labels.as_ref().unwrap()["upgrade"],
        "next"
    );
    assert_eq!(labelled.spec.as_ref().unwrap().unschedulable, Some(true));

    // Server-side apply is approximated by a strategic merge of the applied fields.
    let applied = nodes
        .patch(
            name,
            &PatchParams::apply("aksup"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"applied": "yes"}}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.labels.as_ref().unwrap()["applied"], "yes");
    assert_eq!(applied.metadata.labels.as_ref().unwrap()["upgrade"], "next");
    let labelled = applied;

    // A status change through the main resource is ignored, as on a real server.
    let mut edited = labelled.clone();
    edited.status.as_mut().unwrap().conditions = Some(vec![]);
    edited
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("note".into(), "x".into());
    let replaced = nodes
        .replace(name, &PostParams::default(), &edited)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.annotations.as_ref().unwrap()["note"], "x");
    assert!(!replaced.status.unwrap().conditions.unwrap().is_empty());

    // The stale copy now conflicts.
    let conflict = api_error(nodes.replace(name, &PostParams::default(), &labelled).await);
    assert_eq!(conflict.code, 409);
    assert_eq!(conflict.reason, "Conflict");
    assert!(
        conflict.message.contains("the object has been modified"),
        "{}",
        conflict.message
    );

    // A merge patch that carries a stale resourceVersion conflicts too.
    let stale = labelled.metadata.resource_version.clone().unwrap();
    let conflict = api_error(
        nodes
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"resourceVersion": stale, "labels": {"a": "b"}}}),
                ),
            )
            .await,
    );
    assert_eq!(conflict.code, 409);

    let uncordoned = nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": null}})),
        )
        .await
        .unwrap();
    assert_eq!(uncordoned.spec.unwrap().unschedulable, None);

    // Deleting a Node removes it and (pod GC) its pods.
    assert!(c.pods().iter().any(|p| p["spec"]["nodeName"] == name));
    nodes.delete(name, &Default::default()).await.unwrap();
    assert_eq!(api_error(nodes.get(name).await).code, 404);
    assert!(!c.pods().iter().any(|p| p["spec"]["nodeName"] == name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kube_rs_watcher_follows_nodes_in_both_list_strategies() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client());
    for (round, config) in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut stream = watcher(nodes.clone(), config).boxed();
        let mut initial = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
                .await
                .expect("watch event in time")
                .unwrap()
                .unwrap();
            match event {
                watcher::Event::Init => {}
                watcher::Event::InitApply(n) => initial.push(n.metadata.name.unwrap()),
                watcher::Event::InitDone => break,
                other => panic!("unexpected event before InitDone: {other:?}"),
            }
        }
        assert_eq!(initial.len(), 4, "{initial:?}");
        let label = format!("round-{round}");
        nodes
            .patch(
                "k8s-agentpool-12345678-2",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"watch": label}}})),
            )
            .await
            .unwrap();
        let applied = loop {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
                .await
                .expect("watch event in time")
                .unwrap()
                .unwrap();
            if let watcher::Event::Apply(n) = event
                && n.metadata.labels.as_ref().and_then(|l| l.get("watch")) == Some(&label)
            {
                break n;
            }
        };
        assert_eq!(
            applied.metadata.name.as_deref(),
            Some("k8s-agentpool-12345678-2")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_honours_budgets_grace_periods_and_both_body_forms() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client(), "shop");
    let web: Vec<Pod> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(web.len(), 3);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(c.client(), "shop");
    let status = budgets.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.current_healthy,
            status.desired_healthy,
            status.disruptions_allowed,
            status.expected_pods
        ),
        (Some(3), Some(2), Some(1), Some(3))
    );

    // Cordon every node so that the replacement stays Pending until we allow it.
    let nodes: Api<Node> = Api::all(c.client());
    let node_names: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    for n in &node_names {
        nodes
            .patch(
                n,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": true}})),
            )
            .await
            .unwrap();
    }

    // The correct body form, with a grace period override.
    let first = web[0].metadata.name.clone().unwrap();
    let eviction = Eviction {
        metadata: ObjectMeta {
            name: Some(first.clone()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        delete_options: Some(DeleteOptions {
            grace_period_seconds: Some(120),
            ..Default::default()
        }),
    };
    let ok: kube::core::Status = pods
        .create_subresource("eviction", &first, &PostParams::default(), &eviction)
        .await
        .unwrap();
    assert_eq!(ok.code, 201);
    let terminating = pods.get(&first).await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(
        terminating.metadata.deletion_grace_period_seconds,
        Some(120)
    );

    // The budget is spent: the next eviction is refused with the real 429.
    let second = web[1].metadata.name.clone().unwrap();
    let refused = api_error(pods.evict(&second, &EvictParams::default()).await);
    assert_eq!(refused.code, 429);
    assert_eq!(refused.reason, "TooManyRequests");
    assert_eq!(
        refused.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &refused.details.unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert_eq!(
        cause.message,
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );

    // The replacement cannot be scheduled on cordoned nodes.
    wait_for("a pending replacement", Duration::from_secs(10), || {
        c.pods().iter().any(|p| {
            p["metadata"]["labels"]["app"] == "web"
                && p["status"]["conditions"][0]["reason"] == "Unschedulable"
        })
    })
    .await;
    assert_eq!(
        api_error(pods.evict(&second, &EvictParams::default()).await).code,
        429
    );
    for n in &node_names {
        nodes
            .patch(
                n,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": null}})),
            )
            .await
            .unwrap();
    }

    // Once the replacement is Ready the budget allows one more.
    wait_for("web back to 3 ready pods", Duration::from_secs(20), || {
        c.pods()
            .iter()
            .filter(|p| {
                p["metadata"]["labels"]["app"] == "web"
                    && p["metadata"].get("deletionTimestamp").is_none()
                    && p["status"]["phase"] == "Running"
            })
            .count()
            == 3
    })
    .await;
    wait_for(
        "evicted pod gone after its grace period",
        Duration::from_secs(20),
        || c.pod("shop", &first).is_none(),
    )
    .await;
    let replacement = c
        .pods()
        .into_iter()
        .find(|p| {
            p["metadata"]["labels"]["app"] == "web"
                && !web
                    .iter()
                    .any(|w| w.metadata.name.as_deref() == p["metadata"]["name"].as_str())
        })
        .expect("a replacement pod");
    assert!(replacement["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet");

    // kube-rs 5's own evict() sends `delete_options` (snake_case): accepted,
    // but the grace period override is dropped as by a real server.
    let worker: Vec<Pod> = pods
        .list(&ListParams::default().labels("app=worker"))
        .await
        .unwrap()
        .items;
    let victim = worker[0].metadata.name.clone().unwrap();
    let params = EvictParams {
        delete_options: Some(kube::api::DeleteParams {
            grace_period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    pods.evict(&victim, &params).await.unwrap();
    let victim_pod = pods.get(&victim).await.unwrap();
    assert_eq!(victim_pod.metadata.deletion_grace_period_seconds, Some(30));

    // A wrong name in the body is refused; a missing pod is 404.
    let mismatched = Eviction {
        metadata: ObjectMeta {
            name: Some("other".into()),
            ..Default::default()
        },
        delete_options: None,
    };
    let bad = api_error(
        pods.create_subresource::<_, kube::core::Status>(
            "eviction",
            &second,
            &PostParams::default(),
            &mismatched,
        )
        .await,
    );
    assert_eq!(bad.code, 400);
    assert_eq!(
        api_error(pods.evict("ghost", &EvictParams::default()).await).code,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_recreate_pods_on_schedulable_nodes_only() {
    let c = cluster().await;
    let client = c.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let target = "k8s-agentpool-12345678-0";
    nodes
        .patch(
            target,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    let all_pods: Api<Pod> = Api::all(client.clone());
    let on_target = all_pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={target}")))
        .await
        .unwrap()
        .items;
    assert!(
        on_target
            .iter()
            .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(target))
    );
    assert!(
        on_target
            .iter()
            .any(|p| p.metadata.namespace.as_deref() == Some("kube-system"))
    );

    // Delete every worker: the replacements avoid the cordoned agent and the tainted master.
    let before: Vec<String> = pods
        .list(&ListParams::default().labels("app=worker"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(before.len(), 2);
    for name in &before {
        pods.delete(name, &Default::default()).await.unwrap();
    }
    wait_for("two new ready workers", Duration::from_secs(20), || {
        c.pods()
            .iter()
            .filter(|p| {
                p["metadata"]["labels"]["app"] == "worker"
                    && !before.iter().any(|b| p["metadata"]["name"] == b.as_str())
                    && p["status"]["phase"] == "Running"
            })
            .count()
            == 2
    })
    .await;
    let placements: Vec<String> = c
        .pods()
        .iter()
        .filter(|p| {
            p["metadata"]["labels"]["app"] == "worker"
                && !before.iter().any(|b| p["metadata"]["name"] == b.as_str())
        })
        .map(|p| p["spec"]["nodeName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(placements.len(), 2);
    assert!(
        placements
            .iter()
            .all(|n| n != target && !n.starts_with("k8s-master")),
        "{placements:?}"
    );
    assert_ne!(
        placements[0], placements[1],
        "replicas are spread: {placements:?}"
    );

    // A new node gets the DaemonSet pod; a deleted VM loses its pods.
    c.sim
        .register_node(support::agent("k8s-agentpool-12345678-3", 3));
    wait_for(
        "a kube-proxy pod on the new node",
        Duration::from_secs(5),
        || {
            c.pods().iter().any(|p| {
                p["spec"]["nodeName"] == "k8s-agentpool-12345678-3"
                    && p["metadata"]["labels"]["app"] == "kube-proxy"
            })
        },
    )
    .await;
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let ds_status = ds.get("kube-proxy").await.unwrap().status.unwrap();
    assert_eq!(ds_status.desired_number_scheduled, 5);

    let lost = "k8s-agentpool-12345678-1";
    let before: Vec<String> = c
        .pods()
        .iter()
        .filter(|p| {
            // Replicated pods that are not already terminating (those may finish meanwhile).
            p["spec"]["nodeName"] == lost
                && p["metadata"]["namespace"] == "shop"
                && p["metadata"]["ownerReferences"].is_array()
                && p["metadata"].get("deletionTimestamp").is_none()
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!before.is_empty(), "the spread put replicas on {lost}");
    c.sim.vm_deleted(lost);
    let node = nodes.get(lost).await.unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");
    wait_for(
        "pods of the lost node marked for deletion",
        Duration::from_secs(10),
        || {
            before.iter().all(|name| {
                c.pod("shop", name)
                    .is_some_and(|p| p["metadata"].get("deletionTimestamp").is_some())
            })
        },
    )
    .await;
    // They stay Terminating (no kubelet to confirm) until the Node is deleted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(before.iter().all(|name| c.pod("shop", name).is_some()));
    nodes.delete(lost, &Default::default()).await.unwrap();
    assert!(before.iter().all(|name| c.pod("shop", name).is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_authentication_and_unreachable_api() {
    let c = cluster().await;
    let nodes: Api<Node> = Api::all(c.client_with_token("wrong"));
    let denied = api_error(nodes.list(&ListParams::default()).await);
    assert_eq!(denied.code, 401);
    assert_eq!(denied.reason, "Unauthorized");

    let nodes: Api<Node> = Api::all(c.client());
    c.sim.set_unreachable(true);
    let down = nodes.list(&ListParams::default()).await;
    assert!(
        matches!(&down, Err(kube::Error::Api(s)) if s.code == 503),
        "{down:?}"
    );
    c.sim.set_unreachable(false);
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );

    c.sim.block_evictions("shop", "worker-");
    let pods: Api<Pod> = Api::namespaced(c.client(), "shop");
    let worker = pods
        .list(&ListParams::default().labels("app=worker"))
        .await
        .unwrap()
        .items;
    for w in &worker {
        let refused = api_error(
            pods.evict(w.metadata.name.as_deref().unwrap(), &EvictParams::default())
                .await,
        );
        assert_eq!(refused.code, 429);
    }
    // Pods without a budget outside the blocked prefix are still evictable.
    pods.evict("debug", &EvictParams::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_events_workloads_and_namespaces_are_served() {
    let c = cluster().await;
    let client = c.client();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("aksup-upgrade".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("aksup-1".into()),
            lease_duration_seconds: Some(60),
            ..Default::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(
        api_error(leases.create(&PostParams::default(), &lease).await).code,
        409
    );
    let mut mine = leases.get("aksup-upgrade").await.unwrap();
    mine.spec.as_mut().unwrap().holder_identity = Some("aksup-2".into());
    let updated = leases
        .replace("aksup-upgrade", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_eq!(
        updated.spec.unwrap().holder_identity.as_deref(),
        Some("aksup-2")
    );
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
    let conflict = api_error(
        leases
            .replace("aksup-upgrade", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!(conflict.code, 409);
    assert!(conflict.message.starts_with(
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"aksup-upgrade\""
    ));

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some("aksup-".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".into()),
            name: Some("k8s-agentpool-12345678-0".into()),
            ..Default::default()
        },
        reason: Some("Upgrading".into()),
        message: Some("upgrading node".into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    let made = events.create(&PostParams::default(), &event).await.unwrap();
    assert!(made.metadata.name.unwrap().starts_with("aksup-"));
    let listed = events
        .list(&ListParams::default().fields("involvedObject.name=k8s-agentpool-12345678-0"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.status.unwrap().ready_replicas, Some(3));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "shop");
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let ds = ds.get("kube-proxy").await.unwrap();
    assert_eq!(ds.status.unwrap().number_ready, 4);
    // Workloads are read-only.
    let read_only = api_error(deployments.delete("web", &Default::default()).await);
    assert_eq!(read_only.code, 405);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "default",
            "kube-node-lease",
            "kube-public",
            "kube-system",
            "shop"
        ]
    );
    let mirror: Api<Pod> = Api::namespaced(client, "kube-system");
    let apiserver = mirror
        .get("kube-apiserver-k8s-master-12345678-0")
        .await
        .unwrap();
    assert!(
        apiserver
            .metadata
            .annotations
            .unwrap()
            .contains_key("kubernetes.io/config.mirror")
    );
    assert_eq!(apiserver.metadata.owner_references.unwrap()[0].kind, "Node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_watch_by_node_and_delete_with_a_grace_period() {
    let c = cluster().await;
    let client = c.client();
    let node = c.pod("shop", "debug").unwrap()["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    let all_pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(all_pods, config).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::Init => {}
            watcher::Event::InitApply(p) => initial.push(p),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!initial.is_empty());
    assert!(
        initial
            .iter()
            .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(node.as_str()))
    );
    assert!(
        initial
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some("debug"))
    );

    let pods: Api<Pod> = Api::namespaced(client, "shop");
    let deleted = pods
        .delete(
            "debug",
            &kube::api::DeleteParams {
                grace_period_seconds: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let terminating = deleted.left().expect("a graceful delete returns the pod");
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(20));
    // The watch sees the pod marked for deletion, then gone after 20 virtual seconds.
    let mut saw_terminating = false;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match event {
            watcher::Event::Apply(p) if p.metadata.name.as_deref() == Some("debug") => {
                saw_terminating |= p.metadata.deletion_timestamp.is_some();
            }
            watcher::Event::Delete(p) if p.metadata.name.as_deref() == Some("debug") => break,
            _ => {}
        }
    }
    assert!(saw_terminating);
    assert_eq!(api_error(pods.get("debug").await).code, 404);
}
