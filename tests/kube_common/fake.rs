//! A small stateful stand-in for the Kubernetes API (nodes, pods, evictions
//! with PodDisruptionBudget checks, budgets, leases), served in process as a
//! tower service. It exists to run the `aksup::kube::scenarios` end to end
//! until the simulator's Kubernetes API lands; the same scenarios then run
//! against the simulator and a real API server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::status_body;

#[derive(Default)]
struct State {
    /// kind → (namespace, name) → object
    objects: BTreeMap<&'static str, BTreeMap<(String, String), Value>>,
    version: u64,
}

/// The fake cluster; clone to share.
#[derive(Clone, Default)]
pub struct FakeCluster(Arc<Mutex<State>>);

fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::from(Vec::new())))
}

fn fail(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(code, &status_body(code, reason, message))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector["matchLabels"]
        .as_object()
        .is_some_and(|wanted| wanted.iter().all(|(k, v)| &labels[k] == v))
}

impl FakeCluster {
    pub fn client(&self) -> kube::Client {
        let cluster = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let cluster = cluster.clone();
            async move { Ok::<_, Infallible>(cluster.handle(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Adds an object as the API server would store it.
    pub fn insert(&self, kind: &'static str, mut object: Value) {
        let mut state = self.0.lock().unwrap();
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{}", state.version));
        }
        let key = (
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        state.objects.entry(kind).or_default().insert(key, object);
    }

    pub fn get(&self, kind: &'static str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.0.lock().unwrap();
        state
            .objects
            .get(kind)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request
            .uri()
            .query()
            .unwrap_or_default()
            .replace("%3D", "=")
            .replace("%2F", "/");
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // (kind, namespace, name, subresource)
        let route = match parts.as_slice() {
            ["api", "v1", "nodes"] => ("nodes", "", None, None),
            ["api", "v1", "nodes", name] => ("nodes", "", Some(*name), None),
            ["api", "v1", "pods"] => ("pods", "*", None, None),
            ["api", "v1", "namespaces", ns, "pods"] => ("pods", *ns, None, None),
            ["api", "v1", "namespaces", ns, "pods", name] => ("pods", *ns, Some(*name), None),
            ["api", "v1", "namespaces", ns, "pods", name, sub] => {
                ("pods", *ns, Some(*name), Some(*sub))
            }
            [
                "apis",
                "policy",
                "v1",
                "namespaces",
                ns,
                "poddisruptionbudgets",
            ] => ("pdbs", *ns, None, None),
            [
                "apis",
                "policy",
                "v1",
                "namespaces",
                ns,
                "poddisruptionbudgets",
                name,
            ] => ("pdbs", *ns, Some(*name), None),
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
            ] => ("leases", *ns, None, None),
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                name,
            ] => ("leases", *ns, Some(*name), None),
            ["apis", "apps", "v1", "namespaces", ns, "daemonsets", name] => {
                ("daemonsets", *ns, Some(*name), None)
            }
            _ => return fail(404, "NotFound", &format!("no route {method} {path}")),
        };
        let (kind, namespace, name, sub) = route;
        let mut state = self.0.lock().unwrap();
        if kind == "pdbs" {
            state.refresh_pdbs();
        }
        match (method.as_str(), name, sub) {
            ("GET", None, None) => state.list(kind, namespace, &query),
            ("GET", Some(name), None) => match state.lookup(kind, namespace, name) {
                Some(object) => respond(200, &object),
                None => fail(404, "NotFound", &format!("{kind} {name} not found")),
            },
            ("POST", None, None) => state.create(kind, namespace, body),
            ("PATCH", Some(name), None) => state.update(kind, namespace, name, body, true),
            ("PUT", Some(name), None) => state.update(kind, namespace, name, body, false),
            ("DELETE", Some(name), None) => state.delete(kind, namespace, name, &body),
            ("POST", Some(name), Some("eviction")) => state.evict(namespace, name),
            _ => fail(405, "MethodNotAllowed", &format!("{method} {path}")),
        }
    }
}

impl State {
    fn bump(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    fn lookup(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.objects
            .get(kind)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn list(&self, kind: &str, namespace: &str, query: &str) -> Response<Body> {
        let field = |key: &str| {
            query
                .split('&')
                .find_map(|part| part.strip_prefix(&format!("fieldSelector={key}=")))
                .map(str::to_owned)
        };
        let on_node = field("spec.nodeName");
        let named = field("metadata.name");
        let items: Vec<Value> = self
            .objects
            .get(kind)
            .into_iter()
            .flatten()
            .filter(|((ns, _), _)| namespace == "*" || ns == namespace)
            .filter(|(_, object)| {
                on_node
                    .as_deref()
                    .is_none_or(|node| object["spec"]["nodeName"] == json!(node))
            })
            .filter(|(_, object)| {
                named
                    .as_deref()
                    .is_none_or(|name| object["metadata"]["name"] == json!(name))
            })
            .map(|(_, object)| object.clone())
            .collect();
        respond(
            200,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": self.version.to_string()}, "items": items}),
        )
    }

    fn create(&mut self, kind: &'static str, namespace: &str, mut object: Value) -> Response<Body> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (namespace.to_owned(), name.clone());
        if self
            .objects
            .get(kind)
            .is_some_and(|objects| objects.contains_key(&key))
        {
            return fail(
                409,
                "AlreadyExists",
                &format!("{kind} {name} already exists"),
            );
        }
        let version = self.bump();
        object["metadata"]["namespace"] = json!(namespace);
        object["metadata"]["resourceVersion"] = json!(version);
        object["metadata"]["uid"] = json!(format!("uid-{version}"));
        self.objects
            .entry(kind)
            .or_default()
            .insert(key, object.clone());
        respond(201, &object)
    }

    fn update(
        &mut self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        body: Value,
        patch: bool,
    ) -> Response<Body> {
        let Some(mut object) = self.lookup(kind, namespace, name) else {
            return fail(404, "NotFound", &format!("{kind} {name} not found"));
        };
        let sent = &body["metadata"]["resourceVersion"];
        if !sent.is_null() && sent != &object["metadata"]["resourceVersion"] {
            return fail(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version",
            );
        }
        let uid = object["metadata"]["uid"].clone();
        if patch {
            merge(&mut object, &body);
        } else {
            object = body;
        }
        object["metadata"]["uid"] = uid;
        object["metadata"]["resourceVersion"] = json!(self.bump());
        self.objects
            .entry(kind)
            .or_default()
            .insert((namespace.to_owned(), name.to_owned()), object.clone());
        respond(200, &object)
    }

    fn delete(
        &mut self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        options: &Value,
    ) -> Response<Body> {
        let Some(object) = self.lookup(kind, namespace, name) else {
            return fail(404, "NotFound", &format!("{kind} {name} not found"));
        };
        let preconditions = &options["preconditions"];
        for (field, actual) in [
            ("uid", &object["metadata"]["uid"]),
            ("resourceVersion", &object["metadata"]["resourceVersion"]),
        ] {
            if !preconditions[field].is_null() && &preconditions[field] != actual {
                return fail(409, "Conflict", &format!("precondition failed: {field}"));
            }
        }
        self.objects
            .entry(kind)
            .or_default()
            .remove(&(namespace.to_owned(), name.to_owned()));
        respond(
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        )
    }

    fn refresh_pdbs(&mut self) {
        let pods: Vec<Value> = self
            .objects
            .get("pods")
            .into_iter()
            .flatten()
            .map(|(_, pod)| pod.clone())
            .collect();
        if let Some(pdbs) = self.objects.get_mut("pdbs") {
            for ((namespace, _), pdb) in pdbs.iter_mut() {
                let healthy = pods
                    .iter()
                    .filter(|pod| pod["metadata"]["namespace"] == json!(namespace))
                    .filter(|pod| {
                        labels_match(&pdb["spec"]["selector"], &pod["metadata"]["labels"])
                    })
                    .count() as i64;
                let desired = match (
                    pdb["spec"]["minAvailable"].as_i64(),
                    pdb["spec"]["maxUnavailable"].as_i64(),
                ) {
                    (Some(min), _) => min,
                    (None, Some(max)) => healthy - max,
                    _ => 0,
                };
                pdb["status"] = json!({"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": healthy,
                    "disruptionsAllowed": (healthy - desired).max(0), "observedGeneration": 1});
            }
        }
    }

    fn evict(&mut self, namespace: &str, name: &str) -> Response<Body> {
        let Some(pod) = self.lookup("pods", namespace, name) else {
            return fail(404, "NotFound", &format!("pods {name} not found"));
        };
        self.refresh_pdbs();
        let blocked = self
            .objects
            .get("pdbs")
            .into_iter()
            .flatten()
            .any(|((ns, _), pdb)| {
                ns == namespace
                    && labels_match(&pdb["spec"]["selector"], &pod["metadata"]["labels"])
                    && pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) < 1
            });
        if blocked {
            return fail(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            );
        }
        self.objects
            .entry("pods")
            .or_default()
            .remove(&(namespace.to_owned(), name.to_owned()));
        respond(
            201,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }
}
