//! End-to-end tests of `arm::ArmClient` against the simulator, over HTTPS
//! trusting only the simulator's CA (issue 4's acceptance list): the four
//! credential kinds, wrong secrets and certificates, token expiry and
//! refresh, both api profiles, paging, long-running operations, throttling,
//! server errors and failed deployments. Assertions read the simulator's
//! request log, so they check what went over the wire.
//!
//! `tests/sim_aksup_arm.rs` covers the happy path of every operation; this
//! file covers the rest. Timing assertions are lower bounds expressed as
//! ratios of the server's `Retry-After`, never upper bounds on speed.

#[path = "sim_common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aksup::arm::{
    ApiProfile, ArmClient, ArmConfig, AuthMethod, CredentialConfig, DeploymentRequest, Error,
    HttpOptions, IdentitySystem, LroOptions, ResourceType, RetryPolicy, TransportKind, cancel_pair,
};
use aksup::model::ApiModel;
use aksup::sim::Simulator;
use aksup::sim::faults::FaultSpec;
use aksup::sim::requests::RequestRecord;
use common::*;
use serde_json::json;

const AAD_MODEL: &str = "linux-3-masters.json";
const ADFS_MODEL: &str = "windows-1-master-adfs.json";

/// A simulator with its state dir (CA, apimodel copy, certificate files).
struct Stamp {
    sim: Simulator,
    _dir: tempfile::TempDir,
}

async fn stamp(model: &str, configure: impl FnOnce(&mut aksup::sim::SimOptions)) -> Stamp {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().to_path_buf();
    let sim = start(model, move |o| {
        o.state_dir = Some(path);
        configure(o);
    })
    .await;
    Stamp { sim, _dir: dir }
}

/// Retries fast enough for tests; a short own backoff so that a wait of a
/// second can only come from the server's `Retry-After`.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        jitter_seed: Some(4),
        ..RetryPolicy::default()
    }
}

fn secret(sim: &Simulator) -> AuthMethod {
    AuthMethod::ClientSecret(sim.endpoints.client_secret.as_str().into())
}

fn certificate(sim: &Simulator) -> AuthMethod {
    AuthMethod::ClientCertificate {
        certificate_path: sim.endpoints.client_certificate_file.clone().unwrap(),
        private_key_path: sim.endpoints.client_private_key_file.clone().unwrap(),
    }
}

/// The configuration an operator would give: the environment from the
/// apimodel copy, the identity system the stamp uses, the stamp's CA file, no
/// tenant (AAD discovers it from the 401 challenge).
async fn config(sim: &Simulator, auth: AuthMethod) -> ArmConfig {
    let e = &sim.endpoints;
    let copy = ApiModel::load(e.api_model_file.as_ref().unwrap()).unwrap();
    let http = HttpOptions {
        ca_file: e.ca_file.clone(),
        retry: fast_retry(),
        request_timeout: Duration::from_secs(20),
        ..HttpOptions::default()
    };
    let environment = ArmClient::resolve_environment(
        Some("AzureStackCloud"),
        copy.view().properties.custom_cloud_profile.as_ref(),
        &http,
    )
    .await
    .expect("the environment of the apimodel copy");
    let identity_system = if e.identity_system == "adfs" {
        IdentitySystem::Adfs
    } else {
        IdentitySystem::AzureAd
    };
    let mut config = ArmConfig::new(
        environment,
        CredentialConfig {
            identity_system,
            client_id: e.client_id.clone(),
            tenant_id: None,
            auth,
        },
        e.subscription_id.clone(),
    );
    config.http = http;
    config
}

async fn client(sim: &Simulator, auth: AuthMethod) -> ArmClient {
    ArmClient::new(config(sim, auth).await)
        .await
        .expect("the ARM client")
}

fn fast_lro() -> LroOptions {
    LroOptions::default()
        .with_interval(Duration::from_millis(50))
        .with_timeout(Duration::from_secs(30))
}

fn faults(text: &str) -> Vec<FaultSpec> {
    FaultSpec::parse_list(text).expect("valid faults")
}

fn suffix() -> String {
    aksup::sim::seed::name_suffix("simlinux")
}

/// The query parameter `name` of a logged request.
fn query_param(record: &RequestRecord, name: &str) -> Option<String> {
    url::form_urlencoded::parse(record.query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The ARM requests (not identity, not `/_sim`) of the log, oldest first.
fn arm_requests(sim: &Simulator) -> Vec<RequestRecord> {
    sim.world()
        .requests()
        .records()
        .into_iter()
        .filter(|r| r.path.to_ascii_lowercase().starts_with("/subscriptions/"))
        .collect()
}

fn token_requests(sim: &Simulator) -> Vec<RequestRecord> {
    sim.world()
        .requests()
        .records()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/oauth2/token"))
        .collect()
}

/// Seconds since the epoch of an RFC 3339 UTC time as the simulator writes it
/// (`2026-11-22T03:00:00.1234567Z`).
fn epoch_seconds(time: &str) -> f64 {
    let (date, clock) = time
        .trim_end_matches('Z')
        .split_once('T')
        .expect("an RFC 3339 time");
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().unwrap());
    let (y, m, d) = (
        ymd.next().unwrap(),
        ymd.next().unwrap(),
        ymd.next().unwrap(),
    );
    // Days from the civil date (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut hms = clock.split(':');
    let h: f64 = hms.next().unwrap().parse().unwrap();
    let min: f64 = hms.next().unwrap().parse().unwrap();
    let s: f64 = hms.next().unwrap().parse().unwrap();
    days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s
}

/// Real seconds between two logged requests (the log holds virtual times).
fn real_gap(sim: &Simulator, earlier: &RequestRecord, later: &RequestRecord) -> f64 {
    (epoch_seconds(&later.time) - epoch_seconds(&earlier.time)) / sim.world().clock().scale()
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a secret leaked into the error text: {text}"
        );
    }
}

// ---- credentials ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_credential_kinds_authenticate_over_https() {
    for (model, adfs) in [(AAD_MODEL, false), (ADFS_MODEL, true)] {
        let stamp = stamp(model, |_| {}).await;
        let sim = &stamp.sim;
        let token_path = if adfs {
            "/adfs/oauth2/token".to_owned()
        } else {
            format!("/{}/oauth2/token", sim.endpoints.aad.tenant_id)
        };
        for (kind, auth) in [("secret", secret(sim)), ("certificate", certificate(sim))] {
            let before = token_requests(sim).len();
            let client = client(sim, auth).await;
            let credential = client.credential().expect("the client's own credential");
            assert_eq!(
                credential.tenant(),
                if adfs {
                    "adfs"
                } else {
                    &sim.endpoints.aad.tenant_id
                }
            );
            let vms = client
                .list_vms(&sim.endpoints.resource_group)
                .await
                .unwrap_or_else(|e| panic!("{model} {kind}: {e}"));
            assert!(!vms.is_empty(), "{model} {kind}");
            client
                .get_resource_group(&sim.endpoints.resource_group)
                .await
                .unwrap();
            // One token, from the identity system's v1 endpoint, reused for both calls.
            let tokens = token_requests(sim);
            assert_eq!(tokens.len() - before, 1, "{model} {kind}");
            let last = tokens.last().unwrap();
            assert_eq!(last.path, token_path, "{model} {kind}");
            assert_eq!(last.status, 200, "{model} {kind}");
        }
        // AAD found its tenant from the 401 challenge of an unauthenticated call.
        let challenges = arm_requests(sim)
            .into_iter()
            .filter(|r| r.status == 401)
            .count();
        assert_eq!(challenges, if adfs { 0 } else { 2 }, "{model}");
        stamp.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_clearly_and_never_echoed() {
    for (model, adfs) in [(AAD_MODEL, false), (ADFS_MODEL, true)] {
        let stamp = stamp(model, |_| {}).await;
        let sim = &stamp.sim;
        let wrong = "wrong~Secret-0123456789abcdef";
        let client = client(sim, AuthMethod::ClientSecret(wrong.into())).await;
        let error = client
            .list_vms(&sim.endpoints.resource_group)
            .await
            .unwrap_err();
        let text = error.to_string();
        let debug = format!("{error:?}");
        match &error {
            Error::Auth { code, message, .. } => {
                assert_eq!(code, "invalid_client", "{text}");
                if adfs {
                    assert!(message.contains("MSIS"), "{text}");
                } else {
                    assert!(message.contains("AADSTS7000215"), "{text}");
                }
            }
            other => panic!("{model}: expected an Auth error, got {other:?}"),
        }
        assert!(
            text.contains("client secret"),
            "the hint names the secret: {text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
        assert_no_secret(&text, &[wrong, &sim.endpoints.client_secret]);
        assert_no_secret(&debug, &[wrong, &sim.endpoints.client_secret]);
        // Refused credentials are not retried, and no ARM call carried a token.
        assert_eq!(token_requests(sim).len(), 1, "{model}");
        assert!(arm_requests(sim).iter().all(|r| r.status == 401));
        stamp.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_certificate_is_refused_clearly_and_the_key_is_never_echoed() {
    let other = aksup::sim::tls::Pki::issue_service_principal("not-the-registered-principal")
        .expect("another certificate");
    let files = tempfile::tempdir().unwrap();
    let cert_path = files.path().join("other.crt");
    let key_path = files.path().join("other.key");
    std::fs::write(&cert_path, &other.cert_pem).unwrap();
    std::fs::write(&key_path, &other.key_pem).unwrap();
    let key_body: String = other
        .key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 40)
        .unwrap()
        .to_owned();

    for (model, adfs) in [(AAD_MODEL, false), (ADFS_MODEL, true)] {
        let stamp = stamp(model, |_| {}).await;
        let sim = &stamp.sim;
        let registered = sim.endpoints.client_certificate_file.clone().unwrap();
        // Another certificate, then the registered certificate signed with another key.
        for (case, certificate_path) in [
            ("another certificate", &cert_path),
            ("another key", &registered),
        ] {
            let before = token_requests(sim).len();
            let client = client(
                sim,
                AuthMethod::ClientCertificate {
                    certificate_path: certificate_path.clone(),
                    private_key_path: key_path.clone(),
                },
            )
            .await;
            let error = client
                .get_resource_group(&sim.endpoints.resource_group)
                .await
                .unwrap_err();
            let text = error.to_string();
            match &error {
                Error::Auth { code, message, .. } => {
                    assert!(!code.is_empty(), "{text}");
                    if adfs {
                        assert!(message.contains("MSIS"), "{case}: {text}");
                    } else {
                        assert!(message.contains("AADSTS700027"), "{case}: {text}");
                    }
                }
                other => panic!("{model} {case}: expected an Auth error, got {other:?}"),
            }
            assert!(
                text.contains("certificate"),
                "the hint names the certificate: {text}"
            );
            assert!(!text.contains('\n'), "one line: {text}");
            assert_no_secret(&text, &[&key_body, &sim.endpoints.client_secret]);
            assert_no_secret(&format!("{error:?}"), &[&key_body]);
            assert_eq!(
                token_requests(sim).len() - before,
                1,
                "{model} {case}: not retried"
            );
        }
        stamp.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_before_they_expire() {
    // Tokens live 2 s; the client refreshes at the latest half-way through.
    for model in [AAD_MODEL, ADFS_MODEL] {
        let stamp = stamp(model, |o| o.token_lifetime = Duration::from_secs(2)).await;
        let sim = &stamp.sim;
        let rg = sim.endpoints.resource_group.clone();
        let client = client(sim, secret(sim)).await;
        client.get_resource_group(&rg).await.unwrap();
        client.get_resource_group(&rg).await.unwrap();
        assert_eq!(token_requests(sim).len(), 1, "{model}: the token is cached");

        // Past half the lifetime: the next call fetches a new token first.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        client.get_resource_group(&rg).await.unwrap();
        assert_eq!(token_requests(sim).len(), 2, "{model}: refreshed");
        // Past the first token's expiry: no call was ever refused.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        client.list_vms(&rg).await.unwrap();
        let expired = arm_requests(sim)
            .into_iter()
            .filter(|r| r.status == 401 && !r.endpoint.contains("(unauthenticated)"))
            .count();
        assert_eq!(expired, 0, "{model}: a call went out with an expired token");
        assert!(token_requests(sim).len() >= 3, "{model}");
        stamp.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_replaced_and_the_call_repeated_once() {
    let stamp = stamp(AAD_MODEL, |_| {}).await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    let client = client(sim, certificate(sim)).await;
    client.get_resource_group(&rg).await.unwrap();
    let seen = sim.world().requests().total();

    // The stamp expires every token the client holds (clock skew, revocation).
    {
        let mut state = sim.world().lock();
        let now = std::time::Instant::now();
        for token in state.tokens.values_mut() {
            token.expires = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        }
    }
    let vm = client
        .get_vm(&rg, &format!("k8s-master-{}-0", suffix()))
        .await
        .unwrap();
    assert!(vm.is_some());
    let after: Vec<_> = sim
        .world()
        .requests()
        .records()
        .into_iter()
        .filter(|r| r.seq > seen)
        .map(|r| (r.method, r.status, r.path.ends_with("/oauth2/token")))
        .collect();
    assert_eq!(
        after,
        vec![
            ("GET".to_owned(), 401, false),
            ("POST".to_owned(), 200, true),
            ("GET".to_owned(), 200, false),
        ]
    );

    // A token the stamp keeps refusing is reported, not retried forever.
    {
        let mut state = sim.world().lock();
        state.tokens.clear();
    }
    let seen = sim.world().requests().total();
    sim.world().lock().identity.client_id = "00000000-0000-0000-0000-000000000000".into();
    let error = client.get_resource_group(&rg).await.unwrap_err();
    assert!(
        matches!(&error, Error::Auth { .. } | Error::Arm { status: 401, .. }),
        "{error}"
    );
    let retried = sim
        .world()
        .requests()
        .records()
        .into_iter()
        .filter(|r| r.seq > seen)
        .count();
    assert_eq!(retried, 2, "one refused call, one refused token request");
    stamp.sim.shutdown().await;
}

// ---- api profiles -----------------------------------------------------------

/// Every operation of the client once (a VM replacement included).
async fn every_operation(sim: &Simulator, client: &ArmClient) {
    let rg = sim.endpoints.resource_group.clone();
    let s = suffix();
    client.list_vms(&rg).await.unwrap();
    client
        .get_vm(&rg, &format!("k8s-master-{s}-0"))
        .await
        .unwrap()
        .unwrap();
    client.get_resource_group(&rg).await.unwrap();
    client
        .get_image_version(
            &sim.endpoints.location,
            "microsoft-aks",
            "aks",
            "aks-engine-azurestack-ubuntu-2204",
            "2026.139.1",
        )
        .await
        .unwrap();
    let name = format!("k8s-linuxpool-{s}-1");
    let nic = format!("k8s-linuxpool-{s}-nic-1");
    client.delete_vm(&rg, &name, &fast_lro()).await.unwrap();
    client.delete_nic(&rg, &nic, &fast_lro()).await.unwrap();
    client
        .delete_disk(&rg, &aksup::sim::seed::os_disk_name(&name), &fast_lro())
        .await
        .unwrap();
    let arm = Arm::new(sim);
    let template = NodeVm::agent(&arm, &name, &nic, "linuxpool", "1.34.4").template();
    client
        .put_deployment(
            &rg,
            "linuxpool-1",
            &DeploymentRequest::incremental(template, json!({})),
            &fast_lro(),
        )
        .await
        .unwrap();
    client.get_deployment(&rg, "linuxpool-1").await.unwrap();
    client
        .list_deployment_operations(&rg, "linuxpool-1")
        .await
        .unwrap();
}

/// The resource type a request the client composed is about, from its path.
fn resource_type_of(path: &str) -> ResourceType {
    let p = path.to_ascii_lowercase();
    if p.contains("/microsoft.compute/disks/") {
        ResourceType::Disks
    } else if p.contains("/microsoft.compute/locations/") && p.contains("/publishers/") {
        ResourceType::VirtualMachineImages
    } else if p.contains("/microsoft.compute/") {
        ResourceType::VirtualMachines
    } else if p.contains("/microsoft.network/") {
        ResourceType::NetworkInterfaces
    } else if p.contains("/deployments/") {
        ResourceType::Deployments
    } else if p.contains("/resourcegroups/") {
        ResourceType::ResourceGroups
    } else {
        ResourceType::Subscriptions
    }
}

fn is_poll(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.contains("/operations/")
        || p.contains("/operationstatuses/")
        || p.contains("/operationresults/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_sends_exactly_its_versions_and_the_stamp_refuses_others() {
    for (profile, stamp_profile) in [
        (
            ApiProfile::Hybrid20200901,
            aksup::sim::Profile::Hybrid20200901,
        ),
        (
            ApiProfile::Hybrid20190301,
            aksup::sim::Profile::Hybrid20190301,
        ),
    ] {
        let stamp = stamp(AAD_MODEL, |o| o.profile = stamp_profile).await;
        let sim = &stamp.sim;
        let mut config = config(sim, secret(sim)).await;
        config.profile = profile;
        let client = ArmClient::new(config).await.unwrap();
        every_operation(sim, &client).await;

        let all_versions: BTreeSet<&str> = ResourceType::ALL
            .iter()
            .map(|t| profile.api_version(*t))
            .collect();
        let requests = arm_requests(sim);
        assert!(requests.len() > 15, "{}", requests.len());
        for r in &requests {
            let version = query_param(r, "api-version")
                .unwrap_or_else(|| panic!("{} {} has no api-version", r.method, r.path));
            if is_poll(&r.path) {
                // Poll URLs come from the stamp; they still carry one of the profile's versions.
                assert!(
                    all_versions.contains(version.as_str()),
                    "{} {}?{}",
                    r.method,
                    r.path,
                    r.query
                );
            } else {
                let expected = profile.api_version(resource_type_of(&r.path));
                assert_eq!(version, expected, "{profile:?}: {} {}", r.method, r.path);
            }
            assert!(
                r.status < 400 || r.status == 401,
                "{} {} → {}",
                r.method,
                r.path,
                r.status
            );
        }
        stamp.sim.shutdown().await;
    }

    // A 2019-03-01-hybrid stamp refuses the newer profile's versions with ARM's 400 shape.
    let stamp = stamp(AAD_MODEL, |o| {
        o.profile = aksup::sim::Profile::Hybrid20190301
    })
    .await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    for newer in [ApiProfile::Hybrid20200901, ApiProfile::Latest] {
        let mut config = config(sim, secret(sim)).await;
        config.profile = newer;
        let client = ArmClient::new(config).await.unwrap();
        let before = arm_requests(sim).len();
        match client.list_vms(&rg).await.unwrap_err() {
            Error::Arm {
                status,
                code,
                message,
                request_id,
                ..
            } => {
                assert_eq!(status, 400);
                assert_eq!(code, "NoRegisteredProviderFound");
                assert!(
                    message.contains("2017-12-01"),
                    "names the supported versions: {message}"
                );
                assert!(request_id.is_some());
            }
            other => panic!("{newer:?}: expected a 400, got {other:?}"),
        }
        match client.get_resource_group(&rg).await.unwrap_err() {
            Error::Arm { status, code, .. } => {
                assert_eq!((status, code.as_str()), (400, "InvalidApiVersionParameter"));
            }
            other => panic!("{newer:?}: expected a 400, got {other:?}"),
        }
        // Two calls, two requests: a 400 is never retried.
        assert_eq!(arm_requests(sim).len() - before, 2);
    }
    stamp.sim.shutdown().await;
}

// ---- paging ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_with_a_page_size_of_one_reads_every_page() {
    let stamp = stamp(AAD_MODEL, |o| o.page_size = 1).await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    let client = client(sim, secret(sim)).await;
    let vms = client.list_vms(&rg).await.unwrap();
    let names: Vec<_> = vms.iter().map(|vm| vm.name.clone()).collect();
    let expected: BTreeSet<_> = sim
        .world()
        .lock()
        .virtual_machines
        .values()
        .map(|vm| vm.name.clone())
        .collect();
    assert_eq!(expected.len(), 8);
    assert_eq!(names.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(names.len(), 8, "no VM twice: {names:?}");
    let pages: Vec<_> = arm_requests(sim)
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/virtualMachines") && r.status == 200)
        .collect();
    assert_eq!(pages.len(), 8, "one request per page");
    let links: BTreeSet<_> = pages.iter().map(|r| r.query.clone()).collect();
    assert_eq!(links.len(), 8, "every page followed its own nextLink");

    // Deployment operations page too.
    let arm = Arm::new(sim);
    let s = suffix();
    let template = NodeVm::agent(
        &arm,
        &format!("k8s-linuxpool-{s}-7"),
        &format!("k8s-linuxpool-{s}-nic-7"),
        "linuxpool",
        "1.34.4",
    )
    .template();
    client
        .put_deployment(
            &rg,
            "paged",
            &DeploymentRequest::incremental(template, json!({})),
            &fast_lro(),
        )
        .await
        .unwrap();
    let operations = client
        .list_deployment_operations(&rg, "paged")
        .await
        .unwrap();
    assert!(operations.len() >= 2, "{}", operations.len());
    let operation_pages = arm_requests(sim)
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/deployments/paged/operations"))
        .count();
    assert_eq!(operation_pages, operations.len());
    stamp.sim.shutdown().await;
}

// ---- long-running operations -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_delete_polls_azure_async_operation_honouring_retry_after() {
    // The delete takes ~2.5 real seconds; the stamp says Retry-After: 1.
    let stamp = stamp(AAD_MODEL, |o| {
        o.timings.vm_delete = Duration::from_secs(2500);
    })
    .await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    let client = client(sim, secret(sim)).await;
    let name = format!("k8s-linuxpool-{}-0", suffix());
    client.delete_vm(&rg, &name, &fast_lro()).await.unwrap();
    assert!(client.get_vm(&rg, &name).await.unwrap().is_none());
    assert!(sim.world().lock().vm(&name).is_none());

    let requests = arm_requests(sim);
    let delete = requests
        .iter()
        .position(|r| r.method == "DELETE")
        .expect("the DELETE");
    assert_eq!(requests[delete].status, 202);
    let polls: Vec<_> = requests[delete + 1..]
        .iter()
        .take_while(|r| is_poll(&r.path))
        .collect();
    assert!(polls.len() >= 2, "{} polls", polls.len());
    // Azure-AsyncOperation is preferred: never the Location (monitor) URL.
    assert!(
        polls.iter().all(|r| query_param(r, "monitor").is_none()),
        "{polls:?}"
    );
    // Every poll waited at least the stamp's Retry-After (1 s), not the
    // client's 50 ms interval.
    let mut previous = &requests[delete];
    for poll in &polls {
        let ratio = real_gap(sim, previous, poll) / 1.0;
        assert!(
            ratio >= 0.9,
            "a poll came {ratio:.2}× Retry-After after the previous request"
        );
        previous = poll;
    }
    stamp.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_operations_fail_hit_their_deadline_or_are_cancelled() {
    let stuck_vm = format!("k8s-linuxpool-{}-5", suffix());
    let stamp = stamp(AAD_MODEL, |o| {
        o.faults = faults(&format!(
            r#"[{{"kind":"deploymentFails","deployment":"fails","times":1}},
                {{"kind":"vmStuckCreating","vm":"{stuck_vm}"}},
                {{"kind":"slowOperations","factor":1000,"operation":"vmDelete"}}]"#
        ));
    })
    .await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    let client = client(sim, secret(sim)).await;
    let arm = Arm::new(sim);
    let s = suffix();
    let node = |n: u32| {
        NodeVm::agent(
            &arm,
            &format!("k8s-linuxpool-{s}-{n}"),
            &format!("k8s-linuxpool-{s}-nic-{n}"),
            "linuxpool",
            "1.34.4",
        )
        .template()
    };

    // Failure: the operation ends Failed and is reported as such.
    let error = client
        .put_deployment(
            &rg,
            "fails",
            &DeploymentRequest::incremental(node(4), json!({})),
            &fast_lro(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DeploymentFailed { .. }), "{error:?}");

    // Deadline: the deployment stays Running; the wait stops at the deadline.
    let deadline = Duration::from_millis(1500);
    let error = client
        .put_deployment(
            &rg,
            "stuck",
            &DeploymentRequest::incremental(node(5), json!({})),
            &fast_lro().with_timeout(deadline),
        )
        .await
        .unwrap_err();
    match &error {
        Error::Deadline { waited, doing } => {
            assert!(*waited >= deadline, "{waited:?}");
            assert!(doing.contains("stuck"), "{doing}");
        }
        other => panic!("expected a deadline, got {other:?}"),
    }
    assert!(error.to_string().contains("re-run"), "{error}");
    assert_eq!(
        client
            .get_deployment(&rg, "stuck")
            .await
            .unwrap()
            .unwrap()
            .properties
            .provisioning_state,
        "Running"
    );

    // Cancel: a delete that would take 1000 virtual minutes stops when cancelled.
    let (handle, token) = cancel_pair();
    let name = format!("k8s-linuxpool-{s}-0");
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        handle.cancel();
    });
    let error = client
        .delete_vm(&rg, &name, &fast_lro().with_cancel(token))
        .await
        .unwrap_err();
    cancel.await.unwrap();
    assert!(matches!(error, Error::Cancelled { .. }), "{error:?}");
    assert!(error.to_string().contains("may still complete"), "{error}");
    stamp.sim.shutdown().await;
}

// ---- retries -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_ridden_out_honouring_retry_after() {
    let stamp = stamp(AAD_MODEL, |o| {
        o.faults = faults(
            r#"[{"kind":"throttle","everyNth":1,"times":3,"retryAfterSeconds":1,"method":"GET","pathContains":"/virtualMachines/"}]"#,
        );
    })
    .await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    let client = client(sim, secret(sim)).await;
    let name = format!("k8s-master-{}-0", suffix());
    let vm = client.get_vm(&rg, &name).await.unwrap();
    assert!(vm.is_some());

    let tries: Vec<_> = arm_requests(sim)
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/virtualMachines/{name}")))
        .collect();
    let statuses: Vec<_> = tries.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 429, 200]);
    // After each 429 the client waited Retry-After (1 s), although its own
    // backoff would have waited at most 40 ms.
    for pair in tries.windows(2) {
        let ratio = real_gap(sim, &pair[0], &pair[1]) / 1.0;
        assert!(ratio >= 0.9, "retried {ratio:.2}× Retry-After after a 429");
    }

    // A longer Retry-After makes a longer wait.
    for spec in faults(
        r#"[{"kind":"throttle","everyNth":1,"times":1,"retryAfterSeconds":2,"method":"GET"}]"#,
    ) {
        sim.world().lock().faults.add(spec);
    }
    client.get_resource_group(&rg).await.unwrap();
    let tries: Vec<_> = arm_requests(sim)
        .into_iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .to_ascii_lowercase()
                    .ends_with(&format!("/resourcegroups/{}", rg.to_ascii_lowercase()))
        })
        .collect();
    assert_eq!(
        tries.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let ratio = real_gap(sim, &tries[0], &tries[1]) / 2.0;
    assert!(ratio >= 0.9, "retried {ratio:.2}× Retry-After after a 429");
    stamp.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_list_rides_out_a_request_budget_storm() {
    // 3 reads per 60 virtual seconds (60 ms real at 1000×): the stamp answers
    // 429 with the rest of the window (rounded up to 1 s) as Retry-After.
    let stamp = stamp(AAD_MODEL, |o| {
        o.page_size = 1;
        o.faults = faults(
            r#"[{"kind":"throttle","budget":3,"windowSeconds":60,"method":"GET","pathContains":"/virtualMachines"}]"#,
        );
    })
    .await;
    let sim = &stamp.sim;
    let client = client(sim, secret(sim)).await;
    let vms = client
        .list_vms(&sim.endpoints.resource_group)
        .await
        .unwrap();
    assert_eq!(vms.len(), 8);
    let pages: Vec<_> = arm_requests(sim)
        .into_iter()
        .filter(|r| r.path.ends_with("/virtualMachines"))
        .collect();
    let throttled: Vec<_> = pages.iter().filter(|r| r.status == 429).collect();
    assert!(!throttled.is_empty(), "the budget was exceeded");
    assert_eq!(pages.len() - throttled.len(), 8, "each page read once");
    for pair in pages.windows(2) {
        if pair[0].status == 429 {
            // The retry asks for the same page, Retry-After (1 s) later.
            assert_eq!(pair[1].query, pair[0].query);
            let ratio = real_gap(sim, &pair[0], &pair[1]) / 1.0;
            assert!(ratio >= 0.9, "retried {ratio:.2}× Retry-After after a 429");
        }
    }
    stamp.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stamp_is_trusted_only_through_its_ca() {
    let stamp = stamp(ADFS_MODEL, |_| {}).await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    let mut untrusted = config(sim, secret(sim)).await;
    untrusted.http.ca_file = None;
    untrusted.http.ssl_cert_file = None;
    let client = ArmClient::new(untrusted).await.unwrap();
    let error = client.get_resource_group(&rg).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Transport {
                kind: TransportKind::Tls,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("--ca-file"), "{error}");
    assert_eq!(sim.world().requests().total(), 0, "nothing got through");

    // SSL_CERT_FILE (HttpOptions::ssl_cert_file) adds the stamp's CA as well.
    let mut via_env = config(sim, secret(sim)).await;
    via_env.http.ssl_cert_file = via_env.http.ca_file.take();
    let client = ArmClient::new(via_env).await.unwrap();
    client.get_resource_group(&rg).await.unwrap();
    stamp.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_success_or_reported() {
    let stamp = stamp(AAD_MODEL, |o| {
        o.faults = faults(
            r#"[{"kind":"transient","status":500,"times":2,"method":"GET","pathContains":"/virtualMachines/"},
                {"kind":"transient","status":503,"times":1,"method":"GET","pathContains":"/virtualMachines/"}]"#,
        );
    })
    .await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    let client = client(sim, secret(sim)).await;
    let name = format!("k8s-master-{}-1", suffix());
    let vm = client.get_vm(&rg, &name).await.unwrap().unwrap();
    assert_eq!(vm.name, name);
    let statuses: Vec<_> = arm_requests(sim)
        .into_iter()
        .filter(|r| r.path.ends_with(&format!("/virtualMachines/{name}")))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![500, 500, 503, 200]);

    // A stamp that keeps failing: the client gives up after its attempts and
    // reports ARM's code and request id.
    for spec in faults(r#"[{"kind":"transient","status":500,"method":"GET"}]"#) {
        sim.world().lock().faults.add(spec);
    }
    let error = client.get_resource_group(&rg).await.unwrap_err();
    match &error {
        Error::Arm {
            status,
            code,
            request_id,
            doing,
            ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(code, "InternalServerError");
            assert!(request_id.is_some());
            assert!(doing.contains(&rg), "{doing}");
        }
        other => panic!("expected a 500, got {other:?}"),
    }
    let attempts = arm_requests(sim)
        .into_iter()
        .filter(|r| {
            r.path
                .to_ascii_lowercase()
                .ends_with(&format!("/resourcegroups/{}", rg.to_ascii_lowercase()))
        })
        .count();
    assert_eq!(attempts as u32, fast_retry().max_attempts);
    stamp.sim.shutdown().await;
}

// ---- failed deployments -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deployment_is_reported_in_one_readable_line() {
    let stamp = stamp(AAD_MODEL, |o| {
        o.faults = faults(
            r#"[{"kind":"deploymentFails","deployment":"default-error","times":1},
                {"kind":"deploymentFails","deployment":"custom-error","times":1,
                 "code":"OSProvisioningTimedOut",
                 "message":"OS Provisioning for VM 'x' did not finish in the allotted time.\nThe VM may still finish provisioning successfully."}]"#,
        );
    })
    .await;
    let sim = &stamp.sim;
    let rg = sim.endpoints.resource_group.clone();
    let client = client(sim, secret(sim)).await;
    let arm = Arm::new(sim);
    let s = suffix();
    for (n, deployment, inner) in [
        (4, "default-error", "VMExtensionProvisioningError"),
        (5, "custom-error", "OSProvisioningTimedOut"),
    ] {
        let vm = format!("k8s-linuxpool-{s}-{n}");
        let template = NodeVm::agent(
            &arm,
            &vm,
            &format!("k8s-linuxpool-{s}-nic-{n}"),
            "linuxpool",
            "1.34.4",
        )
        .template();
        let error = client
            .put_deployment(
                &rg,
                deployment,
                &DeploymentRequest::incremental(template, json!({})),
                &fast_lro(),
            )
            .await
            .unwrap_err();
        let text = error.to_string();
        match &error {
            Error::DeploymentFailed {
                deployment: name,
                resource_group,
                code,
                summary,
            } => {
                assert_eq!(name, deployment);
                assert_eq!(resource_group, &rg);
                assert_eq!(code, inner, "{text}");
                // The failing resource and the innermost error, not the wrappers.
                assert!(summary.contains(&vm), "{text}");
                assert!(summary.contains(inner), "{text}");
                assert!(!summary.contains("ResourceDeploymentFailure"), "{text}");
                assert!(!summary.contains("{\""), "no raw JSON: {text}");
                // The VM and its extension failed with the same error: said once.
                assert_eq!(summary.matches(inner).count(), 1, "{text}");
                assert!(summary.contains(&format!("{vm}/cse-agent")), "{text}");
            }
            other => panic!("expected DeploymentFailed, got {other:?}"),
        }
        assert!(
            !text.contains('\n') && !text.contains('\r'),
            "one line: {text:?}"
        );
        assert!(
            text.starts_with(&format!(
                "deployment {deployment} in resource group {rg} failed: "
            )),
            "{text}"
        );
        if n == 5 {
            assert!(
                text.contains("did not finish in the allotted time. The VM may still"),
                "{text}"
            );
        }
    }
    stamp.sim.shutdown().await;
}
