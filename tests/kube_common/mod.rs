//! Request-sequence testing of kube calls (kube-rs `ApiServerVerifier` style):
//! a `tower_test` mock service stands in for the API server and answers a
//! scripted list of exchanges, asserting each request's method and path and
//! recording its body.
#![allow(dead_code)]

pub mod fake;

use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected request and the answer to give.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: &'static str,
    pub path: String,
    /// Substrings the query string must contain (URL-encoded form).
    pub query: Vec<String>,
    pub status: u16,
    pub body: Value,
    /// Raw response text (a watch stream); used instead of `body` when set.
    pub text: Option<String>,
}

impl Exchange {
    pub fn new(method: &'static str, path: impl Into<String>, status: u16, body: Value) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            status,
            body,
            text: None,
        }
    }

    pub fn ok(method: &'static str, path: impl Into<String>, body: Value) -> Self {
        Self::new(method, path, 200, body)
    }

    /// An error answer with a Kubernetes `Status` body.
    pub fn fail(
        method: &'static str,
        path: impl Into<String>,
        code: u16,
        reason: &str,
        message: &str,
    ) -> Self {
        Self::new(method, path, code, status_body(code, reason, message))
    }

    /// A watch answer: one JSON event per line.
    pub fn watch(path: impl Into<String>, events: &[Value]) -> Self {
        let text = events.iter().map(|event| format!("{event}\n")).collect();
        Self {
            text: Some(text),
            ..Self::ok("GET", path, Value::Null)
        }
    }

    pub fn with_query(mut self, part: &str) -> Self {
        self.query.push(part.to_owned());
        self
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

pub fn mock_client() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Answers `exchanges` in order; returns the recorded requests. Panics (in
/// the server task) on an unexpected request.
pub fn serve(
    mut handle: Handle,
    exchanges: Vec<Exchange>,
) -> tokio::task::JoinHandle<Vec<Recorded>> {
    tokio::spawn(async move {
        let mut recorded = Vec::new();
        for (index, exchange) in exchanges.into_iter().enumerate() {
            let (request, send) = handle.next_request().await.unwrap_or_else(|| {
                panic!(
                    "request {index} never came: expected {} {}",
                    exchange.method, exchange.path
                )
            });
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            assert_eq!(
                (method.as_str(), path.as_str()),
                (exchange.method, exchange.path.as_str()),
                "request {index} (query {query})"
            );
            for part in &exchange.query {
                assert!(
                    query.contains(part.as_str()),
                    "request {index}: query {query:?} lacks {part:?}"
                );
            }
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON body")
            };
            recorded.push(Recorded {
                method,
                path,
                query,
                body,
            });
            let response = Response::builder()
                .status(exchange.status)
                .header("content-type", "application/json")
                .body(Body::from(match exchange.text {
                    Some(text) => text.into_bytes(),
                    None => serde_json::to_vec(&exchange.body).expect("response JSON"),
                }))
                .expect("response");
            send.send_response(response);
        }
        recorded
    })
}

/// Runs `operation` while the scripted server answers; fails the test if the
/// operation makes requests beyond the script or never finishes.
pub async fn run<T>(
    handle: Handle,
    exchanges: Vec<Exchange>,
    operation: impl std::future::Future<Output = T>,
) -> (T, Vec<Recorded>) {
    let expected = exchanges.len();
    let server = serve(handle, exchanges);
    let output = tokio::time::timeout(Duration::from_secs(24 * 3600), operation)
        .await
        .expect("the operation did not finish (waiting for an unscripted answer?)");
    let recorded = server.await.expect("server task");
    assert_eq!(recorded.len(), expected);
    (output, recorded)
}

pub fn node(name: &str, unschedulable: bool, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "resourceVersion": "7", "uid": format!("uid-{name}"), "annotations": annotations},
        "spec": {"unschedulable": unschedulable},
    })
}

pub fn pod(namespace: &str, name: &str, uid: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid,
                     "labels": {"app": name.split('-').next().unwrap_or(name)},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-rs"),
                                          "uid": "rs", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running"},
    })
}

pub fn pod_list(pods: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"}, "items": pods})
}

pub fn pdb(
    namespace: &str,
    name: &str,
    app: &str,
    allowed: i32,
    current: i32,
    desired: i32,
) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": app}}, "minAvailable": desired},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": current, "desiredHealthy": desired,
                   "expectedPods": current, "observedGeneration": 1},
    })
}

pub fn pdb_list(pdbs: Vec<Value>) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudgetList", "metadata": {}, "items": pdbs})
}

pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}
