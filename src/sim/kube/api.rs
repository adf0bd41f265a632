//! The Kubernetes REST API over the world: discovery, CRUD, patch, watch,
//! eviction, Table printing, authentication and the unreachable fault.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::patch::{self, PatchType};
use super::pdb::{self, Decision};
use super::resources::{self, Resource};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{ApiError, Change, key_of, metadata_mut, str_at};
use super::{KubeSim, names, table};
use crate::sim::tls::ClientCertVerified;

const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn router(sim: KubeSim) -> Router {
    Router::new().fallback(handle).with_state(sim)
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &error.status())
}

fn success_status(code: u16, details: Option<Value>) -> Value {
    let mut status =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        status["details"] = d;
    }
    if code != 200 {
        status["code"] = json!(code);
    }
    status
}

/// Where a request goes.
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_target(group: &str, version: &str, segments: &[&str]) -> Option<Target> {
    let target = |plural: &str, namespace: Option<&str>, rest: &[&str]| -> Option<Target> {
        let resource = resources::find(group, plural).filter(|r| r.version == version)?;
        if namespace.is_some() && !resource.namespaced {
            return None;
        }
        let (name, subresource) = match rest {
            [] => (None, None),
            [name] => (Some(name.to_string()), None),
            [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
            _ => return None,
        };
        if name.is_some() && resource.namespaced && namespace.is_none() {
            return None;
        }
        Some(Target {
            resource,
            namespace: namespace.map(str::to_string),
            name,
            subresource,
        })
    };
    match segments {
        ["namespaces", ns, plural, rest @ ..]
            if group.is_empty() || resources::find(group, plural).is_some() =>
        {
            if let Some(t) = target(plural, Some(ns), rest) {
                return Some(t);
            }
            if group.is_empty() && rest.is_empty() {
                // /api/v1/namespaces/<name>/<subresource>
                return target("namespaces", None, &[ns, plural]).filter(|t| {
                    t.resource
                        .subresources
                        .iter()
                        .any(|(s, _)| Some(*s) == t.subresource.as_deref())
                });
            }
            None
        }
        [plural, rest @ ..] => target(plural, None, rest),
        [] => None,
    }
}

type Query = BTreeMap<String, String>;

fn query_of(request: &Request) -> Query {
    request
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn authorized(sim: &KubeSim, request: &Request) -> bool {
    if request.extensions().get::<ClientCertVerified>().is_some() {
        return true;
    }
    let Some(value) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let token = token.trim();
    let world = sim.shared.world.lock().unwrap_or_else(|e| e.into_inner());
    world
        .options
        .bearer_tokens
        .iter()
        .any(|t| !t.is_empty() && t == token)
}

async fn handle(State(sim): State<KubeSim>, request: Request) -> Response {
    let unreachable = sim
        .shared
        .world
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unreachable;
    if unreachable {
        return error_response(&ApiError::new(
            503,
            "ServiceUnavailable",
            "the Kubernetes API server is unreachable (simulated fault)",
        ));
    }
    if !authorized(&sim, &request) {
        return error_response(&ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    let path = request.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    let query = query_of(&request);
    let headers = request.headers().clone();
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            ));
        }
    };

    let discovery = |value: Option<Value>| match value {
        Some(v) if method == Method::GET => json_response(200, &v),
        Some(_) => error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            "discovery documents are read-only",
        )),
        None => not_found_path(&path),
    };
    match segments.as_slice() {
        ["version"] => {
            let version = sim.world().server_version();
            return discovery(Some(version_info(&version)));
        }
        ["healthz" | "livez" | "readyz"] => return (StatusCode::OK, "ok").into_response(),
        ["api"] => return discovery(Some(resources::api_versions())),
        ["apis"] => return discovery(Some(resources::api_group_list())),
        ["api", "v1"] => return discovery(resources::resource_list("", "v1")),
        ["apis", group] => {
            let found = resources::groups().into_iter().find(|(g, _)| g == group);
            return discovery(found.map(|(g, v)| resources::api_group(g, v)));
        }
        ["apis", group, version] => return discovery(resources::resource_list(group, version)),
        _ => {}
    }
    let target = match segments.as_slice() {
        ["api", "v1", rest @ ..] => parse_target("", "v1", rest),
        ["apis", group, version, rest @ ..] => parse_target(group, version, rest),
        _ => None,
    };
    let Some(target) = target else {
        return not_found_path(&path);
    };
    let result = dispatch(&sim, &method, &target, &query, &headers, &body).await;
    match result {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

fn not_found_path(path: &str) -> Response {
    let _ = path;
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

fn version_info(git_version: &str) -> Value {
    let core = git_version.trim_start_matches('v');
    let mut parts = core.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": names::suffix(git_version, 5, 40),
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "go1.21.5",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: a JSON object is expected",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn verb_check(resource: &Resource, verb: &str) -> Result<(), ApiError> {
    if resource.allows(verb) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(verb, resource))
    }
}

fn refuse_dry_run(query: &Query) -> Result<(), ApiError> {
    if query.contains_key("dryRun") {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the simulator for this request",
        ));
    }
    Ok(())
}

async fn dispatch(
    sim: &KubeSim,
    method: &Method,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let sub = target.subresource.as_deref();
    if let Some(s) = sub
        && !resource.subresources.iter().any(|(name, _)| *name == s)
    {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match (method.clone(), target.name.as_deref(), sub) {
        (Method::GET, None, None) => {
            let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
            if watch {
                verb_check(resource, "watch")?;
                watch_response(sim, target, query, accept)
            } else {
                verb_check(resource, "list")?;
                list(sim, target, query, accept)
            }
        }
        (Method::GET, Some(name), None | Some("status")) => {
            verb_check(resource, "get")?;
            let world = sim.world();
            let ns = target.namespace.clone().unwrap_or_default();
            let object = world
                .store
                .get(resource, &ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(resource, name))?;
            if table::wants_table(accept) {
                let rv = world.store.resource_version().to_string();
                let include = query.get("includeObject").cloned().unwrap_or_default();
                return Ok(json_table(table::table(
                    resource,
                    &[&object],
                    &rv,
                    &include,
                    world.now(),
                )));
            }
            Ok(json_response(200, &object))
        }
        (Method::POST, None, None) => {
            verb_check(resource, "create")?;
            refuse_dry_run(query)?;
            create(sim, target, parse_json(body)?)
        }
        (Method::POST, Some(name), Some("eviction")) => evict(sim, target, name, query, body),
        (Method::PUT, Some(name), None | Some("status")) => {
            verb_check(resource, "update")?;
            refuse_dry_run(query)?;
            update(sim, target, name, parse_json(body)?)
        }
        (Method::PATCH, Some(name), None | Some("status")) => {
            verb_check(resource, "patch")?;
            refuse_dry_run(query)?;
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let Some(kind) = PatchType::from_content_type(content_type) else {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
                    ),
                ));
            };
            patch_object(sim, target, name, kind, body)
        }
        (Method::DELETE, Some(name), None) => {
            verb_check(resource, "delete")?;
            delete(sim, target, name, query, body)
        }
        _ => Err(ApiError::method_not_allowed(method.as_str(), resource)),
    }
}

fn json_table(value: Value) -> Response {
    let mut response = json_response(200, &value);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
    );
    response
}

/// Namespace, label and field filters of a list or watch.
struct Filter {
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(target: &Target, query: &Query) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(
            query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(
            query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
            target.resource.kind,
        )
        .map_err(|e| ApiError::bad_request(format!("unable to parse field selector: {e}")))?;
        Ok(Self {
            namespace: target.namespace.clone(),
            labels,
            fields,
        })
    }

    fn matches(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| str_at(object, "/metadata/namespace") == ns)
            && self.labels.matches_object(object)
            && self.fields.matches(object)
    }
}

fn list(sim: &KubeSim, target: &Target, query: &Query, accept: &str) -> Result<Response, ApiError> {
    let filter = Filter::new(target, query)?;
    let world = sim.world();
    let rv = world.store.resource_version().to_string();
    let all: Vec<&Value> = world
        .store
        .list(target.resource, target.namespace.as_deref())
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    // Paging: the continue token is the (namespace, name) after which to resume.
    let start_after: Option<(String, String)> = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(|c| {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "the continue token is invalid: start the list again without it",
                    )
                })?;
            let (ns, name) = decoded.split_once('/').unwrap_or(("", &decoded));
            Ok::<_, ApiError>((ns.to_string(), name.to_string()))
        })
        .transpose()?;
    let remaining: Vec<&Value> = all
        .into_iter()
        .filter(|o| start_after.as_ref().is_none_or(|after| key_of(o) > *after))
        .collect();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<&Value> = remaining.iter().take(limit).copied().collect();
    let mut metadata = json!({"resourceVersion": rv});
    if remaining.len() > page.len()
        && let Some(last) = page.last()
    {
        use base64::Engine;
        let (ns, name) = key_of(last);
        metadata["continue"] =
            json!(base64::engine::general_purpose::STANDARD.encode(format!("{ns}/{name}")));
        metadata["remainingItemCount"] = json!(remaining.len() - page.len());
    }
    if table::wants_table(accept) {
        let include = query.get("includeObject").cloned().unwrap_or_default();
        let mut t = table::table(target.resource, &page, &rv, &include, world.now());
        t["metadata"] = metadata;
        return Ok(json_table(t));
    }
    let list = json!({
        "kind": format!("{}List", target.resource.kind),
        "apiVersion": target.resource.api_version(),
        "metadata": metadata,
        "items": page,
    });
    Ok(json_response(200, &list))
}

fn generate_name(object: &mut Value, salt: u64) {
    let name = str_at(object, "/metadata/name").to_string();
    let generate = str_at(object, "/metadata/generateName").to_string();
    if name.is_empty() && !generate.is_empty() {
        let generated = format!("{generate}{}", names::suffix(&generate, salt, 5));
        metadata_mut(object).insert("name".into(), json!(generated));
    }
}

fn check_namespace(target: &Target, object: &mut Value) -> Result<(), ApiError> {
    let Some(ns) = &target.namespace else {
        if !target.resource.namespaced {
            metadata_mut(object).remove("namespace");
        }
        return Ok(());
    };
    let given = str_at(object, "/metadata/namespace").to_string();
    if !given.is_empty() && given != *ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    metadata_mut(object).insert("namespace".into(), json!(ns));
    Ok(())
}

fn check_kind(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let kind = str_at(object, "/kind");
    if !kind.is_empty() && kind != resource.kind {
        return Err(ApiError::bad_request(format!(
            "the object's kind {kind:?} does not match the resource {} ({} expected)",
            resource.qualified_plural(),
            resource.kind
        )));
    }
    Ok(())
}

fn create(sim: &KubeSim, target: &Target, mut object: Value) -> Result<Response, ApiError> {
    let resource = target.resource;
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    check_kind(resource, &object)?;
    if resource.namespaced && target.namespace.is_none() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    check_namespace(target, &mut object)?;
    let mut world = sim.world();
    let salt = world.store.resource_version();
    generate_name(&mut object, salt);
    if let Some(ns) = &target.namespace
        && world
            .store
            .get(resources::get("namespaces"), "", ns)
            .is_none()
    {
        return Err(
            ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
                .with_details(json!({"name": ns, "kind": "namespaces"})),
        );
    }
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "generation",
    ] {
        metadata_mut(&mut object).remove(field);
    }
    match resource.kind {
        "Pod" => {
            object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            if object
                .pointer("/spec/terminationGracePeriodSeconds")
                .is_none()
                && object.get("spec").is_some_and(Value::is_object)
            {
                object["spec"]["terminationGracePeriodSeconds"] = json!(30);
            }
        }
        "PodDisruptionBudget" => {
            if let Some(m) = object.as_object_mut() {
                m.remove("status");
            }
        }
        "Namespace" => {
            let name = str_at(&object, "/metadata/name").to_string();
            object["status"] = json!({"phase": "Active"});
            if !name.is_empty() {
                object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            }
        }
        _ => {}
    }
    let now = world.now();
    let created = world.store.create(resource, object, now)?;
    world.reconcile();
    let (ns, name) = key_of(&created);
    let current = world
        .store
        .get(resource, &ns, &name)
        .cloned()
        .unwrap_or(created);
    drop(world);
    sim.changed();
    Ok(json_response(201, &current))
}

/// Keeps status (main resource) or everything but status (`/status`).
fn split_status(resource: &Resource, old: &Value, mut new: Value, status_only: bool) -> Value {
    if status_only {
        let mut out = old.clone();
        out["status"] = new.get("status").cloned().unwrap_or(json!({}));
        if let Some(rv) = new.pointer("/metadata/resourceVersion") {
            out["metadata"]["resourceVersion"] = rv.clone();
        }
        return out;
    }
    if resource.has_status
        && let Some(m) = new.as_object_mut()
    {
        match old.get("status") {
            Some(s) => {
                m.insert("status".into(), s.clone());
            }
            None => {
                m.remove("status");
            }
        }
    }
    new
}

fn update(
    sim: &KubeSim,
    target: &Target,
    name: &str,
    mut object: Value,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    check_kind(resource, &object)?;
    let given = str_at(&object, "/metadata/name");
    if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    check_namespace(target, &mut object)?;
    let mut world = sim.world();
    let ns = target.namespace.clone().unwrap_or_default();
    let old = world
        .store
        .get(resource, &ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let status_only = target.subresource.as_deref() == Some("status");
    let object = split_status(resource, &old, object, status_only);
    let object = keep_system_metadata(&old, object);
    let updated = world.store.update(resource, object)?;
    world.reconcile();
    drop(world);
    sim.changed();
    Ok(json_response(200, &updated))
}

/// deletionTimestamp and ownerReferences of pods are kept from the stored object.
fn keep_system_metadata(old: &Value, mut new: Value) -> Value {
    for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
        match old.pointer(&format!("/metadata/{field}")) {
            Some(v) => {
                metadata_mut(&mut new).insert(field.into(), v.clone());
            }
            None => {
                metadata_mut(&mut new).remove(field);
            }
        }
    }
    new
}

fn patch_object(
    sim: &KubeSim,
    target: &Target,
    name: &str,
    kind: PatchType,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let patch_body = parse_json(body)?;
    let mut world = sim.world();
    let ns = target.namespace.clone().unwrap_or_default();
    let Some(old) = world.store.get(resource, &ns, name).cloned() else {
        if kind == PatchType::Apply && target.subresource.is_none() && resource.allows("create") {
            drop(world);
            let mut object = patch_body;
            metadata_mut(&mut object).insert("name".into(), json!(name));
            return create(sim, target, object);
        }
        return Err(ApiError::not_found(resource, name));
    };
    let mut patched =
        patch::apply(&old, &patch_body, kind).map_err(|e| ApiError::new(422, "Invalid", e))?;
    if !patched.is_object() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "the patch does not leave an object",
        ));
    }
    // A patch that names a resourceVersion is a precondition.
    if let Some(rv) = patch_body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && Some(rv)
            != old
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(ApiError::conflict(resource, name));
    }
    for field in ["name", "namespace", "uid"] {
        match old.pointer(&format!("/metadata/{field}")) {
            Some(v) => {
                metadata_mut(&mut patched).insert(field.into(), v.clone());
            }
            None => {
                metadata_mut(&mut patched).remove(field);
            }
        }
    }
    if let Some(rv) = old.pointer("/metadata/resourceVersion") {
        metadata_mut(&mut patched).insert("resourceVersion".into(), rv.clone());
    }
    let status_only = target.subresource.as_deref() == Some("status");
    let patched = split_status(resource, &old, patched, status_only);
    let patched = keep_system_metadata(&old, patched);
    let updated = world.store.update(resource, patched)?;
    world.reconcile();
    drop(world);
    sim.changed();
    Ok(json_response(200, &updated))
}

/// DeleteOptions from the body or the query.
struct DeleteOptions {
    grace: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

fn delete_options(query: &Query, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let from_body: Value = if body.is_empty() {
        json!({})
    } else {
        parse_json(body)?
    };
    let grace = query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or_else(|| from_body.get("gracePeriodSeconds").and_then(Value::as_i64));
    Ok(DeleteOptions {
        grace,
        uid: from_body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: from_body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: query.contains_key("dryRun")
            || from_body
                .get("dryRun")
                .is_some_and(|d| d.as_array().is_some_and(|a| !a.is_empty())),
    })
}

fn check_preconditions(
    resource: &Resource,
    name: &str,
    object: &Value,
    options: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = &options.uid
        && uid != str_at(object, "/metadata/uid")
    {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                str_at(object, "/metadata/uid")
            ),
        )
        .with_details(json!({"name": name, "kind": resource.plural})));
    }
    if let Some(rv) = &options.resource_version
        && rv != str_at(object, "/metadata/resourceVersion")
    {
        return Err(ApiError::conflict(resource, name));
    }
    Ok(())
}

fn delete(
    sim: &KubeSim,
    target: &Target,
    name: &str,
    query: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let options = delete_options(query, body)?;
    let mut world = sim.world();
    let ns = target.namespace.clone().unwrap_or_default();
    let object = world
        .store
        .get(resource, &ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    check_preconditions(resource, name, &object, &options)?;
    if options.dry_run {
        return Ok(json_response(200, &object));
    }
    let response = if resource.kind == "Pod" {
        let pod = world.delete_pod(&ns, name, options.grace)?;
        json_response(200, &pod)
    } else {
        world.store.delete(resource, &ns, name);
        if resource.kind == "Node" {
            world.node_deleted(name);
        }
        json_response(
            200,
            &success_status(
                200,
                Some(
                    json!({"name": name, "group": resource.group, "kind": resource.plural,
                                              "uid": str_at(&object, "/metadata/uid")}),
                ),
            ),
        )
    };
    world.reconcile();
    drop(world);
    sim.changed();
    Ok(response)
}

fn evict(
    sim: &KubeSim,
    target: &Target,
    name: &str,
    query: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let eviction = parse_json(body)?;
    let kind = str_at(&eviction, "/kind");
    if !kind.is_empty() && kind != "Eviction" {
        return Err(ApiError::bad_request(format!(
            "the body is a {kind}, an Eviction is expected"
        )));
    }
    let api_version = str_at(&eviction, "/apiVersion");
    if !api_version.is_empty() && !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "Eviction in {api_version} is not served: use policy/v1"
        )));
    }
    if str_at(&eviction, "/metadata/name") != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    // Only the real field name counts: kube-rs 5's `delete_options` is an
    // unknown field the server drops (with a warning).
    let unknown: Vec<String> = eviction
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| {
                    !matches!(
                        k.as_str(),
                        "kind" | "apiVersion" | "metadata" | "deleteOptions"
                    )
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    let grace = options.get("gracePeriodSeconds").and_then(Value::as_i64);
    let dry_run = query.contains_key("dryRun")
        || options
            .get("dryRun")
            .is_some_and(|d| d.as_array().is_some_and(|a| !a.is_empty()));
    let ns = target.namespace.clone().unwrap_or_default();

    let mut world = sim.world();
    let pods = resources::get("pods");
    let pod = world
        .store
        .get(pods, &ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(pods, name))?;
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        && uid != str_at(&pod, "/metadata/uid")
    {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                str_at(&pod, "/metadata/uid")
            ),
        ));
    }
    if world
        .blocked_evictions
        .iter()
        .any(|(bns, prefix)| *bns == ns && name.starts_with(prefix.as_str()))
    {
        return Err(pdb::budget_violation(format!(
            "eviction of pod {ns}/{name} is blocked by a simulator fault"
        )));
    }
    let budgets_resource = resources::get("poddisruptionbudgets.policy");
    let budgets: Vec<Value> = world
        .store
        .list(budgets_resource, Some(&ns))
        .into_iter()
        .cloned()
        .collect();
    let refs: Vec<&Value> = budgets.iter().collect();
    match pdb::decide(&pod, &refs) {
        Decision::Refuse(error) => return Err(error),
        Decision::Delete => {}
    }
    if !dry_run {
        world.delete_pod(&ns, name, grace)?;
        world.reconcile();
    }
    drop(world);
    sim.changed();
    let mut response = json_response(201, &success_status(201, None));
    for field in unknown {
        let warning = format!("299 - \"unknown field \\\"{field}\\\"\"");
        if let Ok(v) = HeaderValue::from_str(&warning) {
            response.headers_mut().append("Warning", v);
        }
    }
    Ok(response)
}

/// One watch event line.
fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(resource: &Resource, rv: u64, initial_end: bool) -> Value {
    let mut object = json!({"kind": resource.kind, "apiVersion": resource.api_version(),
                            "metadata": {"resourceVersion": rv.to_string()}});
    if initial_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    object
}

/// Wraps watched objects in one-row Tables for `kubectl get -w`; the first
/// carries the column definitions, as the real server sends them.
struct TableWrap {
    resource: &'static Resource,
    include: String,
    clock: crate::sim::clock::Clock,
    first: bool,
}

impl TableWrap {
    fn wrap(wrap: &mut Option<TableWrap>, object: &Value) -> Value {
        let Some(w) = wrap.as_mut() else {
            return object.clone();
        };
        let rv = str_at(object, "/metadata/resourceVersion").to_string();
        let mut t = table::table(w.resource, &[object], &rv, &w.include, w.clock.now());
        if !w.first {
            t["columnDefinitions"] = json!([]);
        }
        w.first = false;
        t
    }
}

fn watch_response(
    sim: &KubeSim,
    target: &Target,
    query: &Query,
    accept: &str,
) -> Result<Response, ApiError> {
    let filter = Filter::new(target, query)?;
    let resource = target.resource;
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let send_initial = query
        .get("sendInitialEvents")
        .is_some_and(|b| b == "true" || b == "1");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800)
        .min(1800);
    let requested_rv = query.get("resourceVersion").cloned().unwrap_or_default();
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            resource,
            "",
            "sendInitialEvents requires allowWatchBookmarks=true",
        ));
    }

    let mut wrap = table::wants_table(accept).then(|| TableWrap {
        resource,
        include: query.get("includeObject").cloned().unwrap_or_default(),
        clock: sim
            .shared
            .world
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clock
            .clone(),
        first: true,
    });
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    let (mut last_rv, initial, mut receiver, bookmark_every) = {
        let world = sim.world();
        let current = world.store.resource_version();
        let bookmark_every = world.clock.real(Duration::from_secs(60));
        let receiver = world.store.subscribe();
        if send_initial || requested_rv.is_empty() || requested_rv == "0" {
            let objects: Vec<Value> = world
                .store
                .list(resource, target.namespace.as_deref())
                .into_iter()
                .filter(|o| filter.matches(o))
                .cloned()
                .collect();
            (current, Some(objects), receiver, bookmark_every)
        } else {
            let rv: u64 = requested_rv.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {requested_rv:?}"))
            })?;
            if world.store.changes_since(resource, rv).is_none() {
                let gone = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({current})"),
                );
                let _ = tx.unbounded_send(Ok(event_line("ERROR", &gone.status())));
                drop(tx);
                return Ok(watch_body(rx));
            }
            (rv, None, receiver, bookmark_every)
        }
    };
    if let Some(objects) = initial {
        for o in &objects {
            let _ = tx.unbounded_send(Ok(event_line("ADDED", &TableWrap::wrap(&mut wrap, o))));
        }
        if send_initial {
            let _ = tx.unbounded_send(Ok(event_line(
                "BOOKMARK",
                &bookmark(resource, last_rv, true),
            )));
        }
    }
    let sim = sim.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut next_bookmark = tokio::time::Instant::now() + bookmark_every;
        loop {
            let changes = {
                let world = sim.world();
                match world.store.changes_since(resource, last_rv) {
                    Some(c) => Ok((c, world.store.resource_version())),
                    None => Err(world.store.resource_version()),
                }
            };
            match changes {
                Ok((changes, current)) => {
                    for entry in changes {
                        let now_matches = filter.matches(&entry.object);
                        let kind = match entry.change {
                            Change::Added if now_matches => Some("ADDED"),
                            Change::Deleted if now_matches => Some("DELETED"),
                            Change::Modified => {
                                let before = entry
                                    .previous
                                    .as_ref()
                                    .map_or(now_matches, |p| filter.matches(p));
                                match (before, now_matches) {
                                    (true, true) => Some("MODIFIED"),
                                    (false, true) => Some("ADDED"),
                                    (true, false) => Some("DELETED"),
                                    (false, false) => None,
                                }
                            }
                            _ => None,
                        };
                        if let Some(kind) = kind
                            && tx
                                .unbounded_send(Ok(event_line(
                                    kind,
                                    &TableWrap::wrap(&mut wrap, &entry.object),
                                )))
                                .is_err()
                        {
                            return;
                        }
                    }
                    last_rv = current;
                }
                Err(current) => {
                    let gone = ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {last_rv} ({current})"),
                    );
                    let _ = tx.unbounded_send(Ok(event_line("ERROR", &gone.status())));
                    return;
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                if bookmarks {
                    let _ = tx.unbounded_send(Ok(event_line(
                        "BOOKMARK",
                        &bookmark(resource, last_rv, false),
                    )));
                }
                return;
            }
            if bookmarks && now >= next_bookmark {
                if tx
                    .unbounded_send(Ok(event_line(
                        "BOOKMARK",
                        &bookmark(resource, last_rv, false),
                    )))
                    .is_err()
                {
                    return;
                }
                next_bookmark = now + bookmark_every;
            }
            if tx.is_closed() {
                return;
            }
            let wake = deadline.min(if bookmarks { next_bookmark } else { deadline });
            tokio::select! {
                changed = receiver.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    });
    Ok(watch_body(rx))
}

fn watch_body(
    rx: futures::channel::mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>,
) -> Response {
    let mut response = Response::new(Body::from_stream(rx));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::clock::Clock;
    use crate::sim::kube::{KubeSimOptions, Scenario};
    use tower::ServiceExt;

    fn sim() -> KubeSim {
        let options = KubeSimOptions {
            bearer_tokens: vec!["t0k3n".into()],
            ..KubeSimOptions::default()
        };
        KubeSim::new(Clock::new(1.0), options)
    }

    async fn call(sim: &KubeSim, request: axum::http::Request<Body>) -> (u16, HeaderMap, String) {
        let response = sim.router().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn get(path: &str) -> axum::http::request::Builder {
        axum::http::Request::get(path).header("Authorization", "Bearer t0k3n")
    }

    #[tokio::test]
    async fn requests_need_a_token_or_a_verified_client_certificate() {
        let sim = sim();
        let (code, _, body) = call(
            &sim,
            axum::http::Request::get("/api/v1/nodes")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(code, 401);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        );
        let wrong = axum::http::Request::get("/api/v1/nodes")
            .header("Authorization", "Bearer nope")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&sim, wrong).await.0, 401);
        let mut with_cert = axum::http::Request::get("/api/v1/nodes")
            .body(Body::empty())
            .unwrap();
        with_cert.extensions_mut().insert(ClientCertVerified {
            common_name: "admin".into(),
        });
        assert_eq!(call(&sim, with_cert).await.0, 200);
        assert_eq!(
            call(&sim, get("/api/v1/nodes").body(Body::empty()).unwrap())
                .await
                .0,
            200
        );
        sim.set_unreachable(true);
        assert_eq!(
            call(&sim, get("/api/v1/nodes").body(Body::empty()).unwrap())
                .await
                .0,
            503
        );
    }

    #[tokio::test]
    async fn aggregated_discovery_requests_get_the_legacy_documents() {
        let sim = sim();
        let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let (code, headers, body) = call(
            &sim,
            get("/apis")
                .header("Accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["kind"],
            "APIGroupList"
        );
        let (_, _, body) = call(
            &sim,
            get("/api")
                .header("Accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["kind"],
            "APIVersions"
        );
        assert_eq!(
            call(&sim, get("/apis/apps/v1").body(Body::empty()).unwrap())
                .await
                .0,
            200
        );
        assert_eq!(
            call(&sim, get("/apis/batch/v1").body(Body::empty()).unwrap())
                .await
                .0,
            404
        );
        let (code, _, body) = call(&sim, get("/version").body(Body::empty()).unwrap()).await;
        assert_eq!(code, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["gitVersion"],
            "v1.24.17"
        );
    }

    #[tokio::test]
    async fn pods_are_printed_as_tables_when_asked() {
        let sim = sim();
        sim.apply_scenario(&Scenario::from_json(r#"{"pods": [{"name": "p"}]}"#).unwrap())
            .unwrap();
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        let (code, headers, body) = call(
            &sim,
            get("/api/v1/namespaces/default/pods")
                .header("Accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(
            headers["content-type"],
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        );
        let table: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["rows"][0]["cells"][0], "p");
        assert_eq!(table["rows"][0]["cells"][2], "Pending");
    }

    #[tokio::test]
    async fn kube_rs_eviction_bodies_are_accepted_with_a_warning() {
        let sim = sim();
        sim.apply_scenario(&Scenario::from_json(r#"{"pods": [{"name": "p"}]}"#).unwrap())
            .unwrap();
        let body = r#"{"delete_options": {"gracePeriodSeconds": 1}, "metadata": {"name": "p", "namespace": "default"}}"#;
        let request = axum::http::Request::post("/api/v1/namespaces/default/pods/p/eviction")
            .header("Authorization", "Bearer t0k3n")
            .header("Content-Type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let (code, headers, body) = call(&sim, request).await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(
            headers["warning"],
            "299 - \"unknown field \\\"delete_options\\\"\""
        );
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
        );
        // The pod was never scheduled, so it is deleted at once.
        assert!(sim.objects("pods").is_empty());
    }

    #[tokio::test]
    async fn watches_replay_changes_end_with_a_bookmark_and_expire() {
        let sim = sim();
        let start = sim.world().store.resource_version();
        sim.apply_scenario(&Scenario::from_json(r#"{"namespaces": ["one", "two"]}"#).unwrap())
            .unwrap();
        let (code, _, body) = call(
            &sim,
            get(&format!("/api/v1/namespaces?watch=1&resourceVersion={start}&allowWatchBookmarks=true&timeoutSeconds=1"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(code, 200);
        let events: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let summary: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("ADDED".into(), "one".into()),
                ("ADDED".into(), "two".into()),
                ("BOOKMARK".into(), "".into())
            ]
        );
        sim.world().store.expire_log_before(start + 2);
        let (_, _, body) = call(
            &sim,
            get(&format!(
                "/api/v1/namespaces?watch=1&resourceVersion={start}"
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await;
        let event: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        assert_eq!(event["type"], "ERROR");
        assert_eq!(event["object"]["code"], 410);
        assert_eq!(event["object"]["reason"], "Expired");
    }

    #[test]
    fn paths_resolve_to_resources_namespaces_and_subresources() {
        let t = parse_target(
            "",
            "v1",
            &["namespaces", "shop", "pods", "web-1", "eviction"],
        )
        .unwrap();
        assert_eq!(t.resource.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("shop"));
        assert_eq!(t.name.as_deref(), Some("web-1"));
        assert_eq!(t.subresource.as_deref(), Some("eviction"));
        let t = parse_target("", "v1", &["namespaces", "shop"]).unwrap();
        assert_eq!(t.resource.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("shop"));
        let t = parse_target("", "v1", &["nodes", "n1", "status"]).unwrap();
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_target("", "v1", &["pods"]).unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(parse_target("", "v1", &["pods", "x"]).is_none());
        assert!(parse_target("", "v1", &["namespaces", "a", "nodes"]).is_none());
        let t = parse_target(
            "apps",
            "v1",
            &["namespaces", "kube-system", "daemonsets", "kube-proxy"],
        )
        .unwrap();
        assert_eq!(t.resource.kind, "DaemonSet");
        assert!(parse_target("apps", "v2", &["daemonsets"]).is_none());
    }
}
