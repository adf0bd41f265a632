//! The ARM listener: metadata, identity endpoints, the resource provider API
//! subset aksup uses, long-running operations, and the `/_sim` control API.
//!
//! Paths are matched case-insensitively (ARM's paths and names are), so the
//! router is one fallback handler that splits the path itself.

pub mod auth;
pub mod error;
pub mod render;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{Value, json};

use self::auth::Flavor;
use self::error::ArmError;
use super::faults::{Fault, FaultSpec, RequestFault};
use super::images;
use super::lifecycle;
use super::requests::RequestRecord;
use super::util::new_uuid;
use super::world::{OperationKind, Profile, World};

/// Shared state of the ARM listener.
pub struct ArmApp {
    pub world: World,
    /// `https://127.0.0.1:<port>` (no trailing slash).
    pub base: String,
    /// `azure_ad` or `adfs`: what the metadata endpoint advertises.
    pub identity_system: String,
    /// Real seconds sent in `Retry-After` of long-running operations.
    pub retry_after: u64,
    limits: Mutex<RateWindow>,
}

#[derive(Default)]
struct RateWindow {
    hour: u64,
    reads: u64,
    writes: u64,
    deletes: u64,
}

/// The endpoint template a response came from, for the request log.
#[derive(Clone)]
struct Endpoint(String);

impl ArmApp {
    pub fn new(world: World, base: String, identity_system: String, retry_after: u64) -> Arc<Self> {
        Arc::new(Self {
            world,
            base,
            identity_system,
            retry_after,
            limits: Mutex::new(RateWindow::default()),
        })
    }
}

/// The ARM router.
pub fn router(app: Arc<ArmApp>) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Adds ARM's response headers and records the request.
async fn observe(State(app): State<Arc<ArmApp>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let correlation =
        header(request.headers(), "x-ms-correlation-request-id").unwrap_or_else(new_uuid);
    let client_request = header(request.headers(), "x-ms-client-request-id");
    let time = app.world.now();
    let mut response = next.run(request).await;
    let request_id = new_uuid();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-ms-request-id", request_id.clone());
    set("x-ms-correlation-request-id", correlation);
    set(
        "x-ms-routing-request-id",
        format!(
            "LOCAL:{}:{request_id}",
            super::util::unix_seconds(std::time::SystemTime::now())
        ),
    );
    if let Some(client) = client_request {
        set("x-ms-client-request-id", client);
    }
    if path.to_ascii_lowercase().starts_with("/subscriptions") {
        let (name, remaining) = app.count_rate(&method);
        set(name, remaining.to_string());
    }
    let endpoint = response
        .extensions()
        .get::<Endpoint>()
        .map(|e| e.0.clone())
        .unwrap_or_else(|| format!("{method} (unmatched)"));
    app.world.requests().record(RequestRecord {
        seq: 0,
        time,
        method: method.to_string(),
        path,
        query,
        endpoint,
        status: response.status().as_u16(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        request_id,
    });
    response
}

impl ArmApp {
    /// ARM's per-hour budgets (12,000 reads, 1,200 writes, 15,000 deletes) in virtual hours.
    fn count_rate(&self, method: &Method) -> (&'static str, u64) {
        let hour = self.world.clock().elapsed().as_secs() / 3600;
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        if limits.hour != hour {
            *limits = RateWindow {
                hour,
                ..RateWindow::default()
            };
        }
        match *method {
            Method::GET | Method::HEAD => {
                limits.reads += 1;
                (
                    "x-ms-ratelimit-remaining-subscription-reads",
                    12_000u64.saturating_sub(limits.reads),
                )
            }
            Method::DELETE => {
                limits.deletes += 1;
                (
                    "x-ms-ratelimit-remaining-subscription-deletes",
                    15_000u64.saturating_sub(limits.deletes),
                )
            }
            _ => {
                limits.writes += 1;
                (
                    "x-ms-ratelimit-remaining-subscription-writes",
                    1_200u64.saturating_sub(limits.writes),
                )
            }
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn tagged(endpoint: &str, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response
        .extensions_mut()
        .insert(Endpoint(endpoint.to_owned()));
    response
}

/// A parsed request.
struct Call {
    method: Method,
    /// Original path segments.
    segments: Vec<String>,
    /// Lowercase path segments.
    lower: Vec<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn dispatch(State(app): State<Arc<ArmApp>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(body) => body,
        Err(_) => {
            return tagged(
                "(body too large)",
                ArmError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    "The request body is larger than 16 MiB.",
                ),
            );
        }
    };
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let call = Call {
        method: parts.method.clone(),
        lower: segments.iter().map(|s| s.to_ascii_lowercase()).collect(),
        segments,
        query: url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
        headers: parts.headers,
        body,
    };
    route(&app, &call)
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

fn route(app: &ArmApp, call: &Call) -> Response {
    let lower: Vec<&str> = call.lower.iter().map(String::as_str).collect();
    let get = call.method == Method::GET;
    let post = call.method == Method::POST;
    match lower.as_slice() {
        ["metadata", "endpoints"] if get => tagged("GET /metadata/endpoints", metadata(app, call)),
        ["adfs", "oauth2", "token"] if post => tagged(
            "POST /adfs/oauth2/token",
            auth::token(app, Flavor::Adfs, "adfs", "/adfs/oauth2/token", &call.body),
        ),
        ["adfs", ".well-known", "openid-configuration"] if get => tagged(
            "GET /adfs/.well-known/openid-configuration",
            Json(auth::adfs_openid_configuration(app)),
        ),
        ["common", "discovery", "instance"] if get => {
            let tenant = app.world.lock().identity.tenant_id.clone();
            tagged(
                "GET /common/discovery/instance",
                Json(auth::instance_discovery(app, &tenant)),
            )
        }
        [_, "oauth2", "token"] if post => tagged(
            "POST /{tenant}/oauth2/token",
            auth::token(
                app,
                Flavor::AadV1,
                &call.segments[0],
                &format!("/{}/oauth2/token", call.segments[0]),
                &call.body,
            ),
        ),
        [_, "oauth2", "v2.0", "token"] if post => tagged(
            "POST /{tenant}/oauth2/v2.0/token",
            auth::token(
                app,
                Flavor::AadV2,
                &call.segments[0],
                &format!("/{}/oauth2/v2.0/token", call.segments[0]),
                &call.body,
            ),
        ),
        [_, "v2.0", ".well-known", "openid-configuration"] if get => tagged(
            "GET /{tenant}/v2.0/.well-known/openid-configuration",
            Json(auth::aad_openid_configuration(app, &call.segments[0], true)),
        ),
        [_, ".well-known", "openid-configuration"] if get => tagged(
            "GET /{tenant}/.well-known/openid-configuration",
            Json(auth::aad_openid_configuration(
                app,
                &call.segments[0],
                false,
            )),
        ),
        ["_sim", ..] => sim_control(app, call),
        ["subscriptions", ..] => match auth::check_bearer(app, &call.headers) {
            Err(error) => tagged(
                &format!("{} /subscriptions/** (unauthenticated)", call.method),
                error,
            ),
            Ok(()) => {
                let path = format!("/{}", call.segments.join("/"));
                let fault = {
                    let scale = app.world.clock().scale();
                    let now = app.world.clock().elapsed();
                    app.world
                        .lock()
                        .faults
                        .on_request(call.method.as_str(), &path, now, scale)
                };
                let (endpoint, response) = arm(app, call);
                match fault {
                    Some(fault) => tagged(&endpoint, fault_response(app, fault)),
                    None => tagged(&endpoint, response),
                }
            }
        },
        _ => tagged(
            &format!("{} (unknown path)", call.method),
            ArmError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "The simulator does not serve {} /{}.",
                    call.method,
                    call.segments.join("/")
                ),
            ),
        ),
    }
}

fn fault_response(app: &ArmApp, fault: RequestFault) -> Response {
    let subscription = app.world.lock().subscription_id.clone();
    match fault {
        RequestFault::Throttle { retry_after } => ArmError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled",
            format!(
                "Number of requests for subscription '{subscription}' and operation 'Microsoft.Compute/virtualMachines/read' exceeded the backend storage limit. Please try again after '{retry_after}' seconds."
            ),
        )
        .with_retry_after(retry_after)
        .into_response(),
        RequestFault::Transient { status: 503 } => ArmError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The server is currently unable to handle the request due to a temporary overloading or maintenance of the server. Please try again later.",
        )
        .with_retry_after(1)
        .into_response(),
        RequestFault::Transient { status } => ArmError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "InternalServerError",
            format!(
                "Encountered internal server error. Diagnostic information: timestamp '{}', subscription id '{subscription}', tracking id '{}', request correlation id '{}'.",
                app.world.now(),
                new_uuid(),
                new_uuid()
            ),
        )
        .into_response(),
    }
}

fn metadata(app: &ArmApp, call: &Call) -> Response {
    const VERSIONS: &[&str] = &[
        "1.0",
        "2015-01-01",
        "2019-05-01",
        "2020-06-01",
        "2022-09-01",
    ];
    match call.query("api-version") {
        Some(version) if VERSIONS.contains(&version) => {}
        Some(version) => {
            return ArmError::bad_request(
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{version}' is invalid. The supported versions are '{}'.",
                    VERSIONS.join(",")
                ),
            )
            .into_response();
        }
        None => return missing_api_version().into_response(),
    }
    let audience = app.world.lock().identity.audience.clone();
    let login = if app.identity_system == "adfs" {
        format!("{}/adfs/", app.base)
    } else {
        format!("{}/", app.base)
    };
    Json(json!({
        "galleryEndpoint": format!("{}/gallery/", app.base),
        "graphEndpoint": format!("{}/graph/", app.base),
        "portalEndpoint": format!("{}/portal/", app.base),
        "authentication": {"loginEndpoint": login, "audiences": [audience]},
    }))
    .into_response()
}

fn missing_api_version() -> ArmError {
    ArmError::bad_request(
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )
}

/// The api-version families of the hybrid profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Compute,
    Disks,
    Network,
    Resources,
    Subscriptions,
}

fn supported(profile: Profile, family: Family) -> &'static [&'static str] {
    match (profile, family) {
        (Profile::Hybrid20200901, Family::Compute) => &["2017-12-01", "2020-06-01"],
        (Profile::Hybrid20190301, Family::Compute) => &["2017-12-01"],
        (Profile::Hybrid20200901, Family::Disks) => &["2017-03-30", "2019-07-01"],
        (Profile::Hybrid20190301, Family::Disks) => &["2017-03-30"],
        (Profile::Hybrid20200901, Family::Network) => &["2017-10-01", "2018-11-01"],
        (Profile::Hybrid20190301, Family::Network) => &["2017-10-01"],
        (Profile::Hybrid20200901, Family::Resources) => &["2018-05-01", "2019-10-01"],
        (Profile::Hybrid20190301, Family::Resources) => &["2018-05-01"],
        (_, Family::Subscriptions) => &["2016-06-01"],
    }
}

fn check_version(
    app: &ArmApp,
    call: &Call,
    family: Family,
    resource_type: &str,
) -> Result<(), ArmError> {
    let (profile, location) = {
        let state = app.world.lock();
        (state.profile, state.location.clone())
    };
    let versions = supported(profile, family);
    let Some(version) = call.query("api-version") else {
        return Err(missing_api_version());
    };
    if versions.contains(&version) {
        return Ok(());
    }
    Err(match family {
        Family::Resources | Family::Subscriptions => ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'. The profile of this stamp is {}.",
                versions.join(","),
                profile.name()
            ),
        ),
        _ => ArmError::bad_request(
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location '{location}' and API version '{version}' for type '{resource_type}'. The supported api-versions are '{}'. The supported locations are '{location}'.",
                versions.join(", ")
            ),
        ),
    })
}

macro_rules! checked {
    ($app:expr, $call:expr, $family:expr, $type:expr) => {
        if let Err(error) = check_version($app, $call, $family, $type) {
            return error.into_response();
        }
    };
}

/// Routes an authenticated `/subscriptions/...` call. Returns (endpoint, response).
fn arm(app: &ArmApp, call: &Call) -> (String, Response) {
    let l: Vec<&str> = call.lower.iter().map(String::as_str).collect();
    let s = &call.segments;
    let m = call.method.as_str();
    const RG: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}";
    let (subscription, resource_group) = {
        let state = app.world.lock();
        (state.subscription_id.clone(), state.resource_group.clone())
    };
    if (!s[1..].is_empty() || l.len() > 1)
        && !s
            .get(1)
            .is_some_and(|given| given.eq_ignore_ascii_case(&subscription))
    {
        {
            return (
                format!("{m} /subscriptions/{{subscriptionId}}/**"),
                ArmError::new(
                    StatusCode::NOT_FOUND,
                    "SubscriptionNotFound",
                    format!(
                        "The subscription '{}' could not be found.",
                        s.get(1).cloned().unwrap_or_default()
                    ),
                )
                .into_response(),
            );
        }
    }
    let rest: &[&str] = if l.len() > 2 { &l[2..] } else { &[] };
    if rest.first() == Some(&"resourcegroups")
        && let Some(rg) = s.get(3)
        && !rg.eq_ignore_ascii_case(&resource_group)
    {
        return (
            format!("{m} {RG}/**"),
            ArmError::new(
                StatusCode::NOT_FOUND,
                "ResourceGroupNotFound",
                format!("Resource group '{rg}' could not be found."),
            )
            .into_response(),
        );
    }
    let endpoint = |suffix: &str| format!("{m} {suffix}");
    let compute = "/providers/Microsoft.Compute";
    match rest {
        [] if m == "GET" => (
            endpoint("/subscriptions/{subscriptionId}"),
            subscription_get(app, call),
        ),
        ["resourcegroups", _] if m == "GET" => (endpoint(RG), resource_group_get(app, call)),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.compute",
            "virtualmachines",
        ] if m == "GET" => (
            endpoint(&format!("{RG}{compute}/virtualMachines")),
            vm_list(app, call),
        ),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.compute",
            "virtualmachines",
            _,
        ] => {
            let name = &s[7];
            let e = endpoint(&format!("{RG}{compute}/virtualMachines/{{vmName}}"));
            match m {
                "GET" => (e, vm_get(app, call, name)),
                "DELETE" => (e, vm_delete(app, call, name)),
                _ => (e, method_not_allowed(call)),
            }
        }
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.compute",
            "virtualmachines",
            _,
            "instanceview",
        ] if m == "GET" => (
            endpoint(&format!(
                "{RG}{compute}/virtualMachines/{{vmName}}/instanceView"
            )),
            vm_instance_view(app, call, &s[7]),
        ),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.network",
            "networkinterfaces",
        ] if m == "GET" => (
            endpoint(&format!(
                "{RG}/providers/Microsoft.Network/networkInterfaces"
            )),
            simple_list(app, call, Family::Network, "networkInterfaces", |state| {
                state
                    .network_interfaces
                    .values()
                    .map(|n| render::network_interface(state, n))
                    .collect()
            }),
        ),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.network",
            "networkinterfaces",
            _,
        ] => {
            let e = endpoint(&format!(
                "{RG}/providers/Microsoft.Network/networkInterfaces/{{networkInterfaceName}}"
            ));
            match m {
                "GET" => (e, nic_get(app, call, &s[7])),
                "DELETE" => (
                    e,
                    delete(
                        app,
                        call,
                        Family::Network,
                        "networkInterfaces",
                        &s[7],
                        lifecycle::delete_nic,
                    ),
                ),
                _ => (e, method_not_allowed(call)),
            }
        }
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.compute",
            "disks",
        ] if m == "GET" => (
            endpoint(&format!("{RG}{compute}/disks")),
            simple_list(app, call, Family::Disks, "disks", |state| {
                state
                    .disks
                    .values()
                    .map(|d| render::disk(state, d))
                    .collect()
            }),
        ),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.compute",
            "disks",
            _,
        ] => {
            let e = endpoint(&format!("{RG}{compute}/disks/{{diskName}}"));
            match m {
                "GET" => (e, disk_get(app, call, &s[7])),
                "DELETE" => (
                    e,
                    delete(
                        app,
                        call,
                        Family::Disks,
                        "disks",
                        &s[7],
                        lifecycle::delete_disk,
                    ),
                ),
                _ => (e, method_not_allowed(call)),
            }
        }
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.compute",
            "availabilitysets",
        ] if m == "GET" => (
            endpoint(&format!("{RG}{compute}/availabilitySets")),
            simple_list(app, call, Family::Compute, "availabilitySets", |state| {
                state
                    .availability_sets
                    .values()
                    .map(|a| render::availability_set(state, a))
                    .collect()
            }),
        ),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.compute",
            "availabilitysets",
            _,
        ] if m == "GET" => (
            endpoint(&format!(
                "{RG}{compute}/availabilitySets/{{availabilitySetName}}"
            )),
            availability_set_get(app, call, &s[7]),
        ),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.resources",
            "deployments",
            _,
        ] => {
            let e = endpoint(&format!(
                "{RG}/providers/Microsoft.Resources/deployments/{{deploymentName}}"
            ));
            match m {
                "PUT" => (e, deployment_put(app, call, &s[7])),
                "GET" => (e, deployment_get(app, call, &s[7])),
                _ => (e, method_not_allowed(call)),
            }
        }
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.resources",
            "deployments",
            _,
            "operationstatuses",
            _,
        ] if m == "GET" => (
            endpoint(&format!(
                "{RG}/providers/Microsoft.Resources/deployments/{{deploymentName}}/operationStatuses/{{operationId}}"
            )),
            deployment_operation_status(app, call, &s[7], &s[9], false),
        ),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.resources",
            "deployments",
            _,
            "operationresults",
            _,
        ] if m == "GET" => (
            endpoint(&format!(
                "{RG}/providers/Microsoft.Resources/deployments/{{deploymentName}}/operationResults/{{operationId}}"
            )),
            deployment_operation_status(app, call, &s[7], &s[9], true),
        ),
        ["resourcegroups", _, "deployments", _, "operations"] if m == "GET" => (
            endpoint(&format!("{RG}/deployments/{{deploymentName}}/operations")),
            deployment_operations(app, call, &s[5]),
        ),
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.resources",
            "deployments",
            _,
            "operations",
        ] if m == "GET" => (
            endpoint(&format!(
                "{RG}/providers/Microsoft.Resources/deployments/{{deploymentName}}/operations"
            )),
            deployment_operations(app, call, &s[7]),
        ),
        [
            "providers",
            "microsoft.compute",
            "locations",
            _,
            "publishers",
            _,
            "artifacttypes",
            "vmimage",
            "offers",
            _,
            "skus",
            _,
            "versions",
            _,
        ] if m == "GET" => (
            endpoint(
                "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/locations/{location}/publishers/{publisherName}/artifacttypes/vmimage/offers/{offer}/skus/{skus}/versions/{version}",
            ),
            image_get(app, call, &s[5], &s[7], &s[11], &s[13], Some(&s[15])),
        ),
        [
            "providers",
            "microsoft.compute",
            "locations",
            _,
            "publishers",
            _,
            "artifacttypes",
            "vmimage",
            "offers",
            _,
            "skus",
            _,
            "versions",
        ] if m == "GET" => (
            endpoint(
                "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/locations/{location}/publishers/{publisherName}/artifacttypes/vmimage/offers/{offer}/skus/{skus}/versions",
            ),
            image_get(app, call, &s[5], &s[7], &s[11], &s[13], None),
        ),
        [
            "providers",
            provider @ ("microsoft.compute" | "microsoft.network"),
            "locations",
            _,
            kind @ ("operations" | "operationresults"),
            _,
        ] if m == "GET" => {
            let family = if *provider == "microsoft.compute" {
                Family::Compute
            } else {
                Family::Network
            };
            let provider_name = if family == Family::Compute {
                "Microsoft.Compute"
            } else {
                "Microsoft.Network"
            };
            let kind_name = if *kind == "operations" {
                "operations"
            } else {
                "operationResults"
            };
            let as_location = *kind == "operationresults" || call.query("monitor") == Some("true");
            (
                endpoint(&format!(
                    "/subscriptions/{{subscriptionId}}/providers/{provider_name}/locations/{{location}}/{kind_name}/{{operationId}}"
                )),
                operation_get(app, call, family, &s[7], as_location),
            )
        }
        _ => (
            format!("{m} /subscriptions/** (unknown)"),
            ArmError::new(
                StatusCode::NOT_FOUND,
                "InvalidResourceType",
                format!(
                    "The resource type or path '{}' is not served by the simulator.",
                    s.join("/")
                ),
            )
            .into_response(),
        ),
    }
}

fn method_not_allowed(call: &Call) -> Response {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "The simulator does not serve {} on this resource.",
            call.method
        ),
    )
    .into_response()
}

fn subscription_get(app: &ArmApp, call: &Call) -> Response {
    checked!(app, call, Family::Subscriptions, "subscriptions");
    let state = app.world.lock();
    Json(json!({
        "id": format!("/subscriptions/{}", state.subscription_id),
        "authorizationSource": "RoleBased",
        "subscriptionId": state.subscription_id,
        "tenantId": state.identity.tenant_id,
        "displayName": "aksup simulator",
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "AzureStack", "quotaId": "Default", "spendingLimit": "Off"},
    }))
    .into_response()
}

fn resource_group_get(app: &ArmApp, call: &Call) -> Response {
    checked!(app, call, Family::Resources, "resourceGroups");
    let state = app.world.lock();
    Json(json!({
        "id": state.rg_id(),
        "name": state.resource_group,
        "type": "Microsoft.Resources/resourceGroups",
        "location": state.location,
        "properties": {"provisioningState": "Succeeded"},
    }))
    .into_response()
}

fn page_link(app: &ArmApp, call: &Call, skip: usize) -> String {
    let mut query: Vec<(String, String)> = call
        .query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
        .cloned()
        .collect();
    query.push(("$skiptoken".to_owned(), skip.to_string()));
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    format!("{}/{}?{}", app.base, call.segments.join("/"), encoded)
}

fn paged(app: &ArmApp, call: &Call, items: Vec<Value>) -> Response {
    let page_size = app.world.lock().page_size.max(1);
    let skip: usize = call
        .query("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let end = (skip + page_size).min(items.len());
    let page: Vec<Value> = items
        .get(skip..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut body = json!({"value": page});
    if end < items.len() {
        body["nextLink"] = json!(page_link(app, call, end));
    }
    Json(body).into_response()
}

fn vm_list(app: &ArmApp, call: &Call) -> Response {
    checked!(app, call, Family::Compute, "virtualMachines");
    let now = app.world.now();
    let items = {
        let state = app.world.lock();
        state
            .virtual_machines
            .values()
            .map(|vm| render::virtual_machine(&state, vm, &now, false))
            .collect()
    };
    paged(app, call, items)
}

fn simple_list(
    app: &ArmApp,
    call: &Call,
    family: Family,
    kind: &str,
    items: impl Fn(&super::world::State) -> Vec<Value>,
) -> Response {
    checked!(app, call, family, kind);
    let items = items(&app.world.lock());
    paged(app, call, items)
}

fn not_found(app: &ArmApp, kind: &str, name: &str) -> Response {
    let rg = app.world.lock().resource_group.clone();
    ArmError::not_found(kind, name, &rg).into_response()
}

fn vm_get(app: &ArmApp, call: &Call, name: &str) -> Response {
    checked!(app, call, Family::Compute, "virtualMachines");
    let expand = call
        .query("$expand")
        .is_some_and(|e| e.eq_ignore_ascii_case("instanceView"));
    let now = app.world.now();
    let state = app.world.lock();
    match state.vm(name) {
        Some(vm) => Json(render::virtual_machine(&state, vm, &now, expand)).into_response(),
        None => {
            drop(state);
            not_found(app, "Microsoft.Compute/virtualMachines", name)
        }
    }
}

fn vm_instance_view(app: &ArmApp, call: &Call, name: &str) -> Response {
    checked!(app, call, Family::Compute, "virtualMachines");
    let now = app.world.now();
    let state = app.world.lock();
    match state.vm(name) {
        Some(vm) => Json(render::vm_instance_view(vm, &now)).into_response(),
        None => {
            drop(state);
            not_found(app, "Microsoft.Compute/virtualMachines", name)
        }
    }
}

fn vm_delete(app: &ArmApp, call: &Call, name: &str) -> Response {
    delete(
        app,
        call,
        Family::Compute,
        "virtualMachines",
        name,
        lifecycle::delete_vm,
    )
}

type DeleteFn = fn(&World, &str) -> Result<Option<String>, ArmError>;

fn delete(
    app: &ArmApp,
    call: &Call,
    family: Family,
    kind: &str,
    name: &str,
    start: DeleteFn,
) -> Response {
    checked!(app, call, family, kind);
    match start(&app.world, name) {
        Err(error) => error.into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(op)) => accepted(app, call, family, &op),
    }
}

/// `202 Accepted` with the headers of an asynchronous operation.
fn accepted(app: &ArmApp, call: &Call, family: Family, op: &str) -> Response {
    let (subscription, location) = {
        let state = app.world.lock();
        (state.subscription_id.clone(), state.location.clone())
    };
    let version = call.query("api-version").unwrap_or_default();
    let provider = if family == Family::Network {
        "Microsoft.Network"
    } else {
        "Microsoft.Compute"
    };
    let base = format!(
        "{}/subscriptions/{subscription}/providers/{provider}/locations/{location}",
        app.base
    );
    let (status_url, location_url) = if family == Family::Network {
        (
            format!("{base}/operations/{op}?api-version={version}"),
            format!("{base}/operationResults/{op}?api-version={version}"),
        )
    } else {
        (
            format!("{base}/operations/{op}?api-version={version}"),
            format!("{base}/operations/{op}?monitor=true&api-version={version}"),
        )
    };
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("azure-asyncoperation", status_url),
        ("location", location_url),
        ("retry-after", app.retry_after.to_string()),
        ("azure-asyncnotification", "Enabled".to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

fn operation_get(
    app: &ArmApp,
    call: &Call,
    family: Family,
    id: &str,
    as_location: bool,
) -> Response {
    // Compute operations also track disk deletes, polled with the disks api-version.
    if !(family == Family::Compute
        && check_version(app, call, Family::Disks, "locations/operations").is_ok())
    {
        checked!(app, call, family, "locations/operations");
    }
    let state = app.world.lock();
    let Some(op) = state.operations.get(id).filter(|op| {
        let provider = op.kind.provider();
        (family == Family::Compute && provider == "Microsoft.Compute")
            || (family == Family::Network && provider == "Microsoft.Network")
    }) else {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The operation '{id}' was not found."),
        )
        .into_response();
    };
    if as_location {
        return match op.status.as_str() {
            "InProgress" => {
                let mut response = StatusCode::ACCEPTED.into_response();
                let url = format!(
                    "{}/{}?{}",
                    app.base,
                    call.segments.join("/"),
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(call.query.clone())
                        .finish()
                );
                if let Ok(value) = HeaderValue::from_str(&url) {
                    response.headers_mut().insert("location", value);
                }
                response.headers_mut().insert(
                    "retry-after",
                    HeaderValue::from_str(&app.retry_after.to_string()).expect("digits"),
                );
                response
            }
            "Succeeded" => StatusCode::NO_CONTENT.into_response(),
            _ => {
                let error = op.error.clone().unwrap_or_else(
                    || json!({"code": "OperationFailed", "message": "The operation failed."}),
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": error})),
                )
                    .into_response()
            }
        };
    }
    let mut response = Json(render::operation_status(op, None)).into_response();
    if op.status == "InProgress" {
        response.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&app.retry_after.to_string()).expect("digits"),
        );
    }
    response
}

fn nic_get(app: &ArmApp, call: &Call, name: &str) -> Response {
    checked!(app, call, Family::Network, "networkInterfaces");
    let state = app.world.lock();
    match state.nic(name) {
        Some(nic) => Json(render::network_interface(&state, nic)).into_response(),
        None => {
            drop(state);
            not_found(app, "Microsoft.Network/networkInterfaces", name)
        }
    }
}

fn disk_get(app: &ArmApp, call: &Call, name: &str) -> Response {
    checked!(app, call, Family::Disks, "disks");
    let state = app.world.lock();
    match state.disk(name) {
        Some(disk) => Json(render::disk(&state, disk)).into_response(),
        None => {
            drop(state);
            not_found(app, "Microsoft.Compute/disks", name)
        }
    }
}

fn availability_set_get(app: &ArmApp, call: &Call, name: &str) -> Response {
    checked!(app, call, Family::Compute, "availabilitySets");
    let state = app.world.lock();
    match state.availability_sets.get(&name.to_ascii_lowercase()) {
        Some(set) => Json(render::availability_set(&state, set)).into_response(),
        None => {
            drop(state);
            not_found(app, "Microsoft.Compute/availabilitySets", name)
        }
    }
}

fn deployment_put(app: &ArmApp, call: &Call, name: &str) -> Response {
    checked!(app, call, Family::Resources, "deployments");
    let body: Value = match serde_json::from_slice(&call.body) {
        Ok(body) => body,
        Err(err) => {
            return ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{err}'."),
            )
            .into_response();
        }
    };
    let (created, op) = match lifecycle::start_deployment(&app.world, name, &body) {
        Ok(result) => result,
        Err(error) => return error.into_response(),
    };
    let (body, subscription, rg) = {
        let state = app.world.lock();
        let deployment = &state.deployments[&name.to_ascii_lowercase()];
        (
            render::deployment(&state, deployment),
            state.subscription_id.clone(),
            state.resource_group.clone(),
        )
    };
    let version = call.query("api-version").unwrap_or_default();
    let base = format!(
        "{}/subscriptions/{subscription}/resourcegroups/{rg}/providers/Microsoft.Resources/deployments/{name}",
        app.base
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(body)).into_response();
    for (header, value) in [
        (
            "azure-asyncoperation",
            format!("{base}/operationStatuses/{op}?api-version={version}"),
        ),
        (
            "location",
            format!("{base}/operationResults/{op}?api-version={version}"),
        ),
        ("retry-after", app.retry_after.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header, value);
        }
    }
    response
}

fn deployment_get(app: &ArmApp, call: &Call, name: &str) -> Response {
    checked!(app, call, Family::Resources, "deployments");
    let state = app.world.lock();
    match state.deployments.get(&name.to_ascii_lowercase()) {
        Some(deployment) => Json(render::deployment(&state, deployment)).into_response(),
        None => ArmError::new(
            StatusCode::NOT_FOUND,
            "DeploymentNotFound",
            format!("Deployment '{name}' could not be found."),
        )
        .into_response(),
    }
}

fn deployment_operation_status(
    app: &ArmApp,
    call: &Call,
    name: &str,
    id: &str,
    as_location: bool,
) -> Response {
    checked!(
        app,
        call,
        Family::Resources,
        "deployments/operationStatuses"
    );
    let state = app.world.lock();
    let deployment = state.deployments.get(&name.to_ascii_lowercase());
    let Some(op) = state.operations.get(id).filter(|op| {
        op.kind == OperationKind::Deployment && op.resource.eq_ignore_ascii_case(name)
    }) else {
        return ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The operation '{id}' of deployment '{name}' was not found."),
        )
        .into_response();
    };
    // A later PUT of the same name replaced the deployment: the old operation's own status stands.
    let current = deployment.filter(|d| d.operation_id == op.id);
    let running = op.status == "InProgress";
    if as_location {
        if running {
            let mut response = StatusCode::ACCEPTED.into_response();
            response.headers_mut().insert(
                "retry-after",
                HeaderValue::from_str(&app.retry_after.to_string()).expect("digits"),
            );
            return response;
        }
        return match current {
            Some(d) => Json(render::deployment(&state, d)).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        };
    }
    let mut response = Json(render::operation_status(
        op,
        current.map(|d| d.provisioning_state.as_str()),
    ))
    .into_response();
    if running {
        response.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&app.retry_after.to_string()).expect("digits"),
        );
    }
    response
}

fn deployment_operations(app: &ArmApp, call: &Call, name: &str) -> Response {
    checked!(app, call, Family::Resources, "deployments/operations");
    let items = {
        let state = app.world.lock();
        let Some(deployment) = state.deployments.get(&name.to_ascii_lowercase()) else {
            return ArmError::new(
                StatusCode::NOT_FOUND,
                "DeploymentNotFound",
                format!("Deployment '{name}' could not be found."),
            )
            .into_response();
        };
        deployment
            .operations
            .iter()
            .map(|op| render::deployment_operation(&state, deployment, op))
            .collect()
    };
    paged(app, call, items)
}

fn image_get(
    app: &ArmApp,
    call: &Call,
    location: &str,
    publisher: &str,
    offer: &str,
    sku: &str,
    version: Option<&str>,
) -> Response {
    checked!(
        app,
        call,
        Family::Compute,
        "locations/publishers/artifacttypes/offers/skus/versions"
    );
    let (subscription, own_location) = {
        let state = app.world.lock();
        (state.subscription_id.clone(), state.location.clone())
    };
    let artifact_not_found = || {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "Artifact: VMImage was not found.",
        )
        .with_target("imageReference")
        .into_response()
    };
    if !location.eq_ignore_ascii_case(&own_location) {
        return artifact_not_found();
    }
    let id = |image: &images::MarketplaceImage| {
        format!(
            "/Subscriptions/{subscription}/Providers/Microsoft.Compute/Locations/{own_location}/Publishers/{}/ArtifactTypes/VMImage/Offers/{}/Skus/{}/Versions/{}",
            image.publisher, image.offer, image.sku, image.version
        )
    };
    match version {
        Some(version) => match images::find(publisher, offer, sku, version)
            .filter(|_| !version.eq_ignore_ascii_case("latest"))
        {
            Some(image) => Json(json!({
                "properties": {
                    "osDiskImage": {"operatingSystem": image.os_type},
                    "dataDiskImages": [],
                    "automaticOSUpgradeProperties": {"automaticOSUpgradeSupported": false},
                    "hyperVGeneration": "V1",
                },
                "location": own_location,
                "name": image.version,
                "id": id(image),
            }))
            .into_response(),
            None => artifact_not_found(),
        },
        None => {
            let list: Vec<Value> = images::IMAGES
                .iter()
                .filter(|i| {
                    i.publisher.eq_ignore_ascii_case(publisher)
                        && i.offer.eq_ignore_ascii_case(offer)
                        && i.sku.eq_ignore_ascii_case(sku)
                })
                .map(|i| json!({"location": own_location, "name": i.version, "id": id(i)}))
                .collect();
            Json(Value::Array(list)).into_response()
        }
    }
}

// ---------------------------------------------------------------- /_sim

fn sim_control(app: &ArmApp, call: &Call) -> Response {
    let l: Vec<&str> = call.lower.iter().map(String::as_str).collect();
    let m = call.method.as_str();
    let (endpoint, response) = match l.as_slice() {
        ["_sim", "state"] if m == "GET" => ("GET /_sim/state", Json(app.world.snapshot()).into_response()),
        ["_sim", "requests"] if m == "GET" => {
            let records = app.world.requests().records();
            let last: usize = call.query("last").and_then(|v| v.parse().ok()).unwrap_or(records.len());
            let start = records.len().saturating_sub(last);
            (
                "GET /_sim/requests",
                Json(json!({
                    "total": app.world.requests().total(),
                    "counts": app.world.requests().counts(),
                    "requests": &records[start..],
                }))
                .into_response(),
            )
        }
        ["_sim", "faults"] => match m {
            "GET" => ("GET /_sim/faults", Json(json!({"faults": app.world.lock().faults.entries()})).into_response()),
            "POST" | "PUT" => {
                let text = String::from_utf8_lossy(&call.body);
                match FaultSpec::parse_list(&text) {
                    Err(error) => (
                        "POST /_sim/faults",
                        ArmError::bad_request("InvalidFault", error.to_string()).into_response(),
                    ),
                    Ok(specs) => {
                        if m == "PUT" {
                            app.world.lock().faults.clear();
                        }
                        let ids = install_faults(&app.world, specs);
                        (
                            if m == "PUT" { "PUT /_sim/faults" } else { "POST /_sim/faults" },
                            (StatusCode::CREATED, Json(json!({"ids": ids}))).into_response(),
                        )
                    }
                }
            }
            "DELETE" => {
                app.world.lock().faults.clear();
                app.world.update_kube_reachability();
                ("DELETE /_sim/faults", StatusCode::NO_CONTENT.into_response())
            }
            _ => ("/_sim/faults", method_not_allowed(call)),
        },
        ["_sim", "faults", id] if m == "DELETE" => {
            let removed = id.parse::<u64>().is_ok_and(|id| app.world.lock().faults.remove(id));
            app.world.update_kube_reachability();
            (
                "DELETE /_sim/faults/{id}",
                if removed {
                    StatusCode::NO_CONTENT.into_response()
                } else {
                    ArmError::new(StatusCode::NOT_FOUND, "NotFound", format!("No fault {id}.")).into_response()
                },
            )
        }
        _ => (
            "(unknown /_sim path)",
            ArmError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The simulator's control API has GET /_sim/state, GET /_sim/requests, and GET|POST|PUT|DELETE /_sim/faults[/{id}].",
            )
            .into_response(),
        ),
    };
    tagged(endpoint, response)
}

/// Installs faults, telling the Kubernetes side what concerns it. Returns the ids.
pub fn install_faults(world: &World, specs: Vec<FaultSpec>) -> Vec<u64> {
    let mut ids = Vec::new();
    for spec in specs {
        if let Fault::EvictionBlocked {
            namespace,
            pod_prefix,
        } = &spec.fault
        {
            world.kube().block_evictions(namespace, pod_prefix);
        }
        ids.push(world.lock().faults.add(spec));
    }
    world.update_kube_reachability();
    ids
}

/// How long a client should wait between polls by default, in real seconds:
/// 15 virtual seconds, at least 1.
pub fn default_retry_after(scale: f64) -> u64 {
    Duration::from_secs(15)
        .div_f64(scale.max(0.001))
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64
}
