//! The simulated Kubernetes API judged by kubectl (`/usr/bin/kubectl` or the
//! one on PATH): get, cordon, uncordon, patch, drain, and a drain blocked by a
//! PodDisruptionBudget. Skipped with a message when kubectl is absent.

#[path = "simkube_support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use aksup::sim::kube::{KubeSimOptions, Scenario};
use support::{Cluster, serve, wait_for};

fn kubectl_path() -> Option<PathBuf> {
    let candidates = std::iter::once(PathBuf::from("/usr/bin/kubectl")).chain(
        std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("kubectl"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    let mut candidates = candidates;
    candidates.find(|c| c.is_file())
}

macro_rules! require_kubectl {
    () => {
        match kubectl_path() {
            Some(path) => path,
            None => {
                eprintln!("SKIPPED: kubectl not found (install it to run the kubectl judge tests)");
                return;
            }
        }
    };
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs kubectl against the cluster, bounded by `limit`.
async fn kubectl(path: &PathBuf, c: &Cluster, args: &[&str], limit: Duration) -> Output {
    let mut command = tokio::process::Command::new(path);
    command
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--request-timeout=20s")
        .args(args)
        .env("HOME", c.dir.path())
        .env("KUBECACHEDIR", c.dir.path().join("cache"))
        .env_remove("KUBECONFIG")
        .kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {limit:?}"))
        .expect("kubectl runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn scenario(min_available: u32) -> Scenario {
    Scenario::from_json(&format!(
        r#"{{
        "daemonSets": [{{"namespace": "kube-system", "name": "kube-proxy", "tolerations": [{{"operator": "Exists"}}]}}],
        "deployments": [{{"namespace": "shop", "name": "web", "replicas": 3}},
                        {{"namespace": "shop", "name": "cache", "replicas": 1, "emptyDir": true}}],
        "pods": [{{"namespace": "shop", "name": "debug"}}],
        "podDisruptionBudgets": [{{"namespace": "shop", "name": "web", "selector": {{"app": "web"}}, "minAvailable": {min_available}}}]
    }}"#
    ))
    .unwrap()
}

async fn cluster(scale: f64, min_available: u32) -> Cluster {
    let c = serve(scale, KubeSimOptions::default()).await;
    c.seed(3, &scenario(min_available));
    c.settle().await;
    c
}

fn node_of(c: &Cluster, namespace: &str, name: &str) -> String {
    c.pod(namespace, name).unwrap()["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_cordons_uncordons_and_patches_nodes() {
    let kubectl_bin = require_kubectl!();
    let c = cluster(50.0, 2).await;
    let limit = Duration::from_secs(60);

    let out = kubectl(&kubectl_bin, &c, &["get", "nodes"], limit).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stderr, "", "kubectl complained");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    let master: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(master[0], "k8s-agentpool-12345678-0");
    let master_line = lines.iter().find(|l| l.starts_with("k8s-master")).unwrap();
    let fields: Vec<&str> = master_line.split_whitespace().collect();
    assert_eq!(
        (fields[1], fields[2], fields[4]),
        ("Ready", "master", "v1.24.17")
    );

    let out = kubectl(
        &kubectl_bin,
        &c,
        &["get", "pods", "-A", "-o", "wide"],
        limit,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stderr, "", "kubectl complained");
    assert!(
        out.stdout.contains("kube-apiserver-k8s-master-12345678-0"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Running"), "{}", out.stdout);
    let out = kubectl(
        &kubectl_bin,
        &c,
        &["get", "ds,deploy,rs,pdb,lease,ns", "-A"],
        limit,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stderr, "", "kubectl complained");
    assert!(
        out.stdout.contains("daemonset.apps/kube-proxy"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("poddisruptionbudget.policy/web"),
        "{}",
        out.stdout
    );

    let node = "k8s-agentpool-12345678-1";
    let out = kubectl(&kubectl_bin, &c, &["cordon", node], limit).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout.trim(), format!("node/{node} cordoned"));
    let out = kubectl(&kubectl_bin, &c, &["get", "node", node], limit).await;
    assert!(
        out.stdout.contains("Ready,SchedulingDisabled"),
        "{}",
        out.stdout
    );
    let out = kubectl(&kubectl_bin, &c, &["cordon", node], limit).await;
    assert_eq!(
        out.stdout.trim(),
        format!("node/{node} already cordoned"),
        "{}",
        out.all()
    );
    let out = kubectl(&kubectl_bin, &c, &["uncordon", node], limit).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stdout.trim(), format!("node/{node} uncordoned"));
    let unschedulable = c
        .sim
        .objects("nodes")
        .into_iter()
        .find(|n| n["metadata"]["name"] == node)
        .unwrap()["spec"]
        .get("unschedulable")
        .cloned();
    assert!(
        unschedulable.as_ref().is_none_or(|u| *u == false),
        "{unschedulable:?}"
    );

    for (kind, patch) in [
        (
            "json",
            r#"[{"op": "add", "path": "/metadata/labels/upgrade", "value": "json"}]"#,
        ),
        ("merge", r#"{"metadata": {"labels": {"upgrade": "merge"}}}"#),
        (
            "strategic",
            r#"{"metadata": {"labels": {"upgrade": "strategic"}}}"#,
        ),
    ] {
        let out = kubectl(
            &kubectl_bin,
            &c,
            &["patch", "node", node, "--type", kind, "-p", patch],
            limit,
        )
        .await;
        assert_eq!(out.code, 0, "{}", out.all());
        let out = kubectl(
            &kubectl_bin,
            &c,
            &[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.metadata.labels.upgrade}",
            ],
            limit,
        )
        .await;
        assert_eq!(out.stdout, kind);
    }
    let out = kubectl(
        &kubectl_bin,
        &c,
        &[
            "get",
            "pdb",
            "-n",
            "shop",
            "web",
            "-o",
            "jsonpath={.status.disruptionsAllowed}",
        ],
        limit,
    )
    .await;
    assert_eq!(out.stdout, "1", "{}", out.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_needs_the_usual_flags_and_empties_the_node() {
    let kubectl_bin = require_kubectl!();
    let c = cluster(50.0, 2).await;
    let limit = Duration::from_secs(90);
    let node = node_of(&c, "shop", "debug");
    let cache_pod = c
        .pods()
        .into_iter()
        .find(|p| p["metadata"]["labels"]["app"] == "cache")
        .unwrap();
    let cache_node = node_of(&c, "shop", cache_pod["metadata"]["name"].as_str().unwrap());

    // Without --ignore-daemonsets and --force, kubectl refuses as on a real cluster.
    let out = kubectl(&kubectl_bin, &c, &["drain", &node, "--timeout=20s"], limit).await;
    assert_ne!(out.code, 0);
    let text = out.all();
    assert!(
        text.contains("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"),
        "{text}"
    );
    assert!(
        text.contains(
            "cannot delete Pods that declare no controller (use --force to override): shop/debug"
        ),
        "{text}"
    );

    let out = kubectl(
        &kubectl_bin,
        &c,
        &[
            "drain",
            &cache_node,
            "--ignore-daemonsets",
            "--force",
            "--timeout=20s",
        ],
        limit,
    )
    .await;
    assert_ne!(out.code, 0);
    assert!(
        out.all().contains(
            "cannot delete Pods with local storage (use --delete-emptydir-data to override)"
        ),
        "{}",
        out.all()
    );

    let out = kubectl(
        &kubectl_bin,
        &c,
        &[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--timeout=60s",
        ],
        limit,
    )
    .await;
    let text = out.all();
    assert_eq!(out.code, 0, "{text}");
    // The refused drain above already cordoned the node, as kubectl does.
    assert!(
        text.contains(&format!("node/{node} already cordoned")),
        "{text}"
    );
    assert!(text.contains("evicting pod shop/debug"), "{text}");
    assert!(text.contains("pod/debug evicted"), "{text}");
    assert!(text.contains(&format!("node/{node} drained")), "{text}");
    // Only DaemonSet pods remain; the unreplicated pod is gone for good.
    for p in c
        .pods()
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node.as_str())
    {
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet",
            "{p}"
        );
    }
    assert!(c.pod("shop", "debug").is_none());
    wait_for(
        "web back to 3 Running replicas elsewhere",
        Duration::from_secs(20),
        || {
            let web: Vec<_> = c
                .pods()
                .into_iter()
                .filter(|p| {
                    p["metadata"]["labels"]["app"] == "web" && p["status"]["phase"] == "Running"
                })
                .collect();
            web.len() == 3 && web.iter().all(|p| p["spec"]["nodeName"] != node.as_str())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_blocked_by_a_budget_retries_reports_it_and_completes_once_allowed() {
    let kubectl_bin = require_kubectl!();
    // minAvailable 3 of 3: no disruption is allowed.
    let c = cluster(50.0, 3).await;
    let node = c
        .pods()
        .into_iter()
        .find(|p| p["metadata"]["labels"]["app"] == "web")
        .unwrap()["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    let args = [
        "drain",
        node.as_str(),
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
    ];

    // Bounded by --timeout, kubectl keeps retrying, reports the budget and fails.
    let mut timed: Vec<&str> = args.to_vec();
    timed.push("--timeout=12s");
    let out = kubectl(&kubectl_bin, &c, &timed, Duration::from_secs(60)).await;
    let text = out.all();
    assert_ne!(out.code, 0, "{text}");
    let refusals = text
        .matches("Cannot evict pod as it would violate the pod's disruption budget.")
        .count();
    assert!(
        refusals >= 2,
        "kubectl should have retried the eviction: {text}"
    );
    assert!(text.contains("(will retry after 5s)"), "{text}");
    assert!(text.contains("global timeout reached: 12s"), "{text}");
    assert!(
        c.pods()
            .iter()
            .any(|p| p["metadata"]["labels"]["app"] == "web"
                && p["spec"]["nodeName"] == node.as_str())
    );

    // Run it again without a timeout and let the budget allow one disruption
    // while kubectl is retrying: the drain completes.
    let path = kubectl_bin.clone();
    let kubeconfig = c.kubeconfig.clone();
    let home = c.dir.path().to_path_buf();
    let owned_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let drain = tokio::spawn(async move {
        let output = tokio::time::timeout(
            Duration::from_secs(90),
            tokio::process::Command::new(path)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(owned_args)
                .arg("--timeout=80s")
                .env("HOME", home)
                .env_remove("KUBECONFIG")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("drain finishes once the budget allows")
        .expect("kubectl runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = kubectl(
        &kubectl_bin,
        &c,
        &[
            "patch",
            "pdb",
            "web",
            "-n",
            "shop",
            "--type",
            "merge",
            "-p",
            r#"{"spec": {"minAvailable": 2}}"#,
        ],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    let (code, text) = drain.await.unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{text}"
    );
    assert!(text.contains(&format!("node/{node} drained")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_prints_changes_as_table_rows() {
    let kubectl_bin = require_kubectl!();
    let c = cluster(50.0, 2).await;
    let sim = c.sim.clone();
    // The kubelet stops reporting Ready while kubectl watches.
    let not_ready = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sim.set_node_ready("k8s-agentpool-12345678-2", false);
    });
    let out = kubectl(
        &kubectl_bin,
        &c,
        &["get", "nodes", "-w", "--request-timeout=4s"],
        Duration::from_secs(30),
    )
    .await;
    not_ready.await.unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("k8s-agentpool-12345678-2") && l.contains("NotReady")),
        "{}",
        out.all()
    );
}
