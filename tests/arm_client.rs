//! The ARM client against a scripted HTTPS stub (tests/arm_stub): credentials,
//! api profiles, paging, long-running operations, retries, deployment failures.

mod arm_stub;

use std::time::Duration;

use aksup::arm::{
    ApiProfile, ArmClient, ArmConfig, AuthMethod, AzureEnvironment, CredentialConfig,
    DeploymentRequest, Error, HttpOptions, IdentitySystem, LroOptions, ResourceType, RetryPolicy,
    Secret, TransportKind, cancel_pair,
};
use arm_stub::{
    AUDIENCE, CLIENT_ID, ClientCert, Identity, Reply, SECRET, SUBSCRIPTION, Stub, TENANT,
    client_certificate,
};
use serde_json::json;

const RG: &str = "kube-rg";

fn environment(stub: &Stub, identity: IdentitySystem) -> AzureEnvironment {
    AzureEnvironment {
        name: "AzureStackCloud".into(),
        resource_manager_endpoint: format!("{}/", stub.base()),
        active_directory_endpoint: match identity {
            IdentitySystem::Adfs => format!("{}/adfs/", stub.base()),
            IdentitySystem::AzureAd => format!("{}/", stub.base()),
        },
        token_audience: AUDIENCE.into(),
        resource_manager_vm_dns_suffix: "cloudapp.azurestack.external".into(),
        is_azure_stack: true,
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        jitter_seed: Some(7),
        ..RetryPolicy::default()
    }
}

fn config(stub: &Stub, identity: IdentitySystem, auth: AuthMethod) -> ArmConfig {
    let credentials = CredentialConfig {
        identity_system: identity,
        client_id: CLIENT_ID.into(),
        tenant_id: (identity == IdentitySystem::Adfs).then(|| "adfs".to_owned()),
        auth,
    };
    let mut config = ArmConfig::new(environment(stub, identity), credentials, SUBSCRIPTION);
    config.http = HttpOptions {
        ca_file: Some(stub.ca_path().to_owned()),
        retry: fast_retry(),
        ..HttpOptions::default()
    };
    config
}

fn secret_auth() -> AuthMethod {
    AuthMethod::ClientSecret(Secret::new(SECRET))
}

fn cert_auth(stub: &Stub, cert: &ClientCert) -> AuthMethod {
    let cert_path = stub.dir().join("sp-cert.pem");
    let key_path = stub.dir().join("sp-key.pem");
    std::fs::write(&cert_path, &cert.cert_pem).expect("write cert");
    std::fs::write(&key_path, &cert.key_pem).expect("write key");
    AuthMethod::ClientCertificate {
        certificate_path: cert_path,
        private_key_path: key_path,
    }
}

fn register_secret(stub: &Stub) {
    stub.register(Identity {
        secret: Some(SECRET.into()),
        ..Identity::default()
    });
}

fn register_cert(stub: &Stub, cert: &ClientCert) {
    stub.register(Identity {
        cert_der: Some(cert.cert_der.clone()),
        public_key: Some(cert.public_key.clone()),
        ..Identity::default()
    });
}

fn vms_path() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines"
    )
}

fn vm_path(name: &str) -> String {
    format!("{}/{name}", vms_path())
}

fn vm(name: &str) -> serde_json::Value {
    json!({"id": format!("{}", vm_path(name)), "name": name, "location": "local", "tags": {"poolName": "agentpool1"},
           "properties": {"provisioningState": "Succeeded", "unknownField": [1, 2]}})
}

/// Three pages of one VM each.
fn script_paged_vms(stub: &Stub) {
    stub.route(
        "GET",
        &vms_path(),
        vec![Reply::json(
            200,
            json!({"value": [vm("k8s-agentpool1-1234-0")], "nextLink": format!("{{BASE}}/page2{}", "?api-version=2020-06-01&$skiptoken=a")}),
        )],
    );
    stub.route(
        "GET",
        "/page2",
        vec![Reply::json(
            200,
            json!({"value": [vm("k8s-agentpool1-1234-1")], "nextLink": "{BASE}/page3?api-version=2020-06-01&$skiptoken=b"}),
        )],
    );
    stub.route(
        "GET",
        "/page3",
        vec![Reply::json(
            200,
            json!({"value": [vm("k8s-master-1234-0")]}),
        )],
    );
}

#[tokio::test]
async fn aad_secret_discovers_the_tenant_and_lists_every_page() {
    let stub = Stub::start().await;
    register_secret(&stub);
    script_paged_vms(&stub);
    let client = ArmClient::new(config(&stub, IdentitySystem::AzureAd, secret_auth()))
        .await
        .expect("client");
    assert_eq!(
        client
            .credential()
            .map(|c| c.tenant().to_owned())
            .as_deref(),
        Some(TENANT)
    );

    let vms = client.list_vms(RG).await.expect("list");
    let names: Vec<_> = vms.iter().map(|vm| vm.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "k8s-agentpool1-1234-0",
            "k8s-agentpool1-1234-1",
            "k8s-master-1234-0"
        ]
    );
    assert_eq!(vms[0].tag("poolname"), Some("agentpool1"));

    let requests = stub.requests();
    // The unauthenticated probe came first, then one v1 token request with the audience as resource.
    assert_eq!(requests[0].path, format!("/subscriptions/{SUBSCRIPTION}"));
    assert!(!requests[0].headers.contains_key("authorization"));
    let tokens = stub.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].path, format!("/{TENANT}/oauth2/token"));
    let form = tokens[0].form();
    assert_eq!(form["resource"], AUDIENCE);
    assert_eq!(form["client_secret"], SECRET);
    assert!(!form.contains_key("scope"));
    // Pages: three GETs, all with the bearer token.
    let pages: Vec<_> = stub.arm_requests().into_iter().skip(1).collect();
    assert_eq!(pages.len(), 3);
    assert!(
        pages
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer token-1")
    );
    assert_eq!(pages[0].api_version(), Some("2020-06-01"));
}

#[tokio::test]
async fn aad_certificate_sends_a_ps256_assertion_with_x5t_s256() {
    let stub = Stub::start().await;
    let cert = client_certificate("aksup-sp");
    register_cert(&stub, &cert);
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    let mut config = config(&stub, IdentitySystem::AzureAd, cert_auth(&stub, &cert));
    config.credentials.tenant_id = Some(TENANT.into());
    let client = ArmClient::new(config).await.expect("client");
    let got = client
        .get_vm(RG, "vm0")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.name, "vm0");
    let checks = stub.assertions();
    assert_eq!(checks.len(), 1);
    let check = &checks[0];
    assert_eq!(check.alg, "PS256");
    assert_eq!(check.thumbprint_header, "x5t#S256");
    assert!(
        check.thumbprint_matches && check.signature_valid && check.claims_valid,
        "{check:?}"
    );
    let form = stub.token_requests()[0].form();
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!form.contains_key("client_secret"));
    // No tenant probe when the tenant is given; get_vm asks for the instance view.
    let arm = stub.arm_requests();
    assert_eq!(arm.len(), 1);
    assert_eq!(
        arm[0].query.get("$expand").map(String::as_str),
        Some("instanceView")
    );
}

#[tokio::test]
async fn adfs_secret_posts_to_the_adfs_v1_path() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    assert!(client.get_vm(RG, "vm0").await.expect("get").is_some());
    let tokens = stub.token_requests();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].path, "/adfs/oauth2/token");
    assert_eq!(tokens[0].form()["resource"], AUDIENCE);
    // ADFS needs no tenant discovery.
    assert_eq!(stub.arm_requests().len(), 1);
}

#[tokio::test]
async fn adfs_certificate_sends_an_rs256_assertion_with_x5t() {
    let stub = Stub::start().await;
    let cert = client_certificate("aksup-sp-adfs");
    register_cert(&stub, &cert);
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, cert_auth(&stub, &cert)))
        .await
        .expect("client");
    assert!(client.get_vm(RG, "vm0").await.expect("get").is_some());
    let checks = stub.assertions();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].alg, "RS256");
    assert_eq!(checks[0].thumbprint_header, "x5t");
    assert!(
        checks[0].thumbprint_matches && checks[0].signature_valid && checks[0].claims_valid,
        "{:?}",
        checks[0]
    );
}

#[tokio::test]
async fn a_wrong_secret_is_reported_as_invalid_client_without_the_secret() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    let wrong = "not-the-right-secret-123";
    let config = config(
        &stub,
        IdentitySystem::AzureAd,
        AuthMethod::ClientSecret(Secret::new(wrong)),
    );
    let client = ArmClient::new(config).await.expect("client");
    let error = client.get_vm(RG, "vm0").await.expect_err("refused");
    assert!(matches!(error, Error::Auth { .. }), "{error:?}");
    assert_eq!(error.code(), Some("invalid_client"));
    assert_eq!(error.request_id(), Some("req-0001"));
    let text = error.to_string();
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(text.contains("AZURE_CLIENT_SECRET"), "{text}");
    assert!(
        !text.contains(wrong) && !format!("{error:?}").contains(wrong),
        "{text}"
    );
    // Refused credentials are not retried.
    assert_eq!(stub.token_requests().len(), 1);
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_wrong_certificate_is_refused() {
    let stub = Stub::start().await;
    let registered = client_certificate("registered");
    let other = client_certificate("someone-else");
    register_cert(&stub, &registered);
    let client = ArmClient::new(config(
        &stub,
        IdentitySystem::Adfs,
        cert_auth(&stub, &other),
    ))
    .await
    .expect("client");
    let error = client.get_vm(RG, "vm0").await.expect_err("refused");
    assert_eq!(error.code(), Some("invalid_client"), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    let checks = stub.assertions();
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].thumbprint_matches && !checks[0].signature_valid);
}

#[tokio::test]
async fn tokens_are_cached_and_refreshed_before_expiry() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.set_expires_in(json!("2")); // v1 endpoints send a string
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    client.get_vm(RG, "vm0").await.expect("get");
    client.get_vm(RG, "vm0").await.expect("get");
    assert_eq!(
        stub.token_requests().len(),
        1,
        "the second call reuses the cached token"
    );
    // With a 2 s token and the default 5 min margin, refresh happens half-way (1 s).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client.get_vm(RG, "vm0").await.expect("get");
    assert_eq!(stub.token_requests().len(), 2, "refreshed before expiry");
    let auth: Vec<_> = stub
        .arm_requests()
        .iter()
        .map(|r| r.headers["authorization"].clone())
        .collect();
    assert_eq!(auth, ["Bearer token-1", "Bearer token-1", "Bearer token-2"]);

    // A numeric expires_in works too.
    stub.set_expires_in(json!(3600));
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    client.get_vm(RG, "vm0").await.expect("get");
    client.get_vm(RG, "vm0").await.expect("get");
    assert_eq!(stub.token_requests().len(), 3);
}

/// Every operation, answered at once, to record the api-versions sent.
fn script_every_operation(stub: &Stub) {
    let sub = format!("/subscriptions/{SUBSCRIPTION}");
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    stub.route("DELETE", &vm_path("vm0"), vec![Reply::empty(204)]);
    stub.route(
        "GET",
        &vms_path(),
        vec![Reply::json(200, json!({"value": []}))],
    );
    stub.route(
        "DELETE",
        &format!("{sub}/resourceGroups/{RG}/providers/Microsoft.Network/networkInterfaces/nic0"),
        vec![Reply::empty(200)],
    );
    stub.route(
        "DELETE",
        &format!("{sub}/resourceGroups/{RG}/providers/Microsoft.Compute/disks/disk0"),
        vec![Reply::empty(404)],
    );
    stub.route(
        "GET",
        &format!("{sub}/providers/Microsoft.Compute/locations/local/publishers/microsoft-aks/artifacttypes/vmimage/offers/aks/skus/aks-ubuntu-2004/versions/2022.08.29"),
        vec![Reply::json(200, json!({"id": "img", "name": "2022.08.29", "location": "local", "properties": {"hyperVGeneration": "V1"}}))],
    );
    stub.route(
        "GET",
        &format!("{sub}/resourcegroups/{RG}"),
        vec![Reply::json(200, json!({"id": "rg", "name": RG, "location": "local", "properties": {"provisioningState": "Succeeded"}}))],
    );
    let deployment = format!(
        "{sub}/resourcegroups/{RG}/providers/Microsoft.Resources/deployments/agentpool1-0-v1-24-6"
    );
    stub.route(
        "PUT",
        &deployment,
        vec![Reply::json(201, json!({"id": "d", "name": "agentpool1-0-v1-24-6", "properties": {"provisioningState": "Succeeded"}}))],
    );
    stub.route(
        "GET",
        &format!("{sub}/resourcegroups/{RG}/deployments/agentpool1-0-v1-24-6/operations"),
        vec![Reply::json(200, json!({"value": []}))],
    );
}

async fn call_every_operation(client: &ArmClient) {
    let options = LroOptions::default();
    client.get_vm(RG, "vm0").await.expect("get vm");
    client.list_vms(RG).await.expect("list vms");
    client
        .delete_vm(RG, "vm0", &options)
        .await
        .expect("delete vm");
    client
        .delete_nic(RG, "nic0", &options)
        .await
        .expect("delete nic");
    client
        .delete_disk(RG, "disk0", &options)
        .await
        .expect("delete disk (404 = done)");
    client
        .get_image_version(
            "local",
            "microsoft-aks",
            "aks",
            "aks-ubuntu-2004",
            "2022.08.29",
        )
        .await
        .expect("image");
    client.get_resource_group(RG).await.expect("rg");
    let request = DeploymentRequest::incremental(json!({"resources": []}), json!({}));
    let deployment = client
        .put_deployment(RG, "agentpool1-0-v1-24-6", &request, &options)
        .await
        .expect("deploy");
    assert_eq!(deployment.properties.provisioning_state, "Succeeded");
    client
        .list_deployment_operations(RG, "agentpool1-0-v1-24-6")
        .await
        .expect("operations");
}

fn versions_sent(stub: &Stub) -> Vec<(String, String, String)> {
    stub.arm_requests()
        .iter()
        .filter(|r| r.headers.contains_key("authorization"))
        .map(|r| {
            let kind = r
                .path
                .split('/')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>();
            let name = if r.path.contains("/versions/") {
                "vmimage".to_owned()
            } else if r.path.ends_with("/operations") {
                "deployments/operations".to_owned()
            } else if kind.len() == 4 {
                "resourcegroups".to_owned()
            } else {
                kind.get(6).map(|s| s.to_string()).unwrap_or_default()
            };
            (
                r.method.clone(),
                name,
                r.api_version().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn profile_2020_09_01_hybrid_sends_exactly_its_versions() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.allow_api_versions(&[
        "2020-06-01",
        "2019-07-01",
        "2018-11-01",
        "2019-10-01",
        "2016-06-01",
    ]);
    script_every_operation(&stub);
    let config = config(&stub, IdentitySystem::Adfs, secret_auth());
    assert_eq!(
        config.profile,
        ApiProfile::Hybrid20200901,
        "the default on Azure Stack Hub"
    );
    let client = ArmClient::new(config).await.expect("client");
    call_every_operation(&client).await;
    let sent = versions_sent(&stub);
    let expected = [
        ("GET", "virtualMachines", "2020-06-01"),
        ("GET", "virtualMachines", "2020-06-01"),
        ("DELETE", "virtualMachines", "2020-06-01"),
        ("DELETE", "networkInterfaces", "2018-11-01"),
        ("DELETE", "disks", "2019-07-01"),
        ("GET", "vmimage", "2020-06-01"),
        ("GET", "resourcegroups", "2019-10-01"),
        ("PUT", "deployments", "2019-10-01"),
        ("GET", "deployments/operations", "2019-10-01"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(m, k, v)| (m.to_string(), k.to_string(), v.to_string()))
        .collect();
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn profile_2019_03_01_hybrid_sends_exactly_its_versions() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.allow_api_versions(&[
        "2017-12-01",
        "2017-03-30",
        "2017-10-01",
        "2018-05-01",
        "2016-06-01",
    ]);
    script_every_operation(&stub);
    let mut config = config(&stub, IdentitySystem::Adfs, secret_auth());
    config.profile = ApiProfile::Hybrid20190301;
    let client = ArmClient::new(config).await.expect("client");
    call_every_operation(&client).await;
    let versions: Vec<_> = versions_sent(&stub)
        .into_iter()
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(
        versions,
        [
            "2017-12-01",
            "2017-12-01",
            "2017-12-01",
            "2017-10-01",
            "2017-03-30",
            "2017-12-01",
            "2018-05-01",
            "2018-05-01",
            "2018-05-01"
        ]
    );

    // The stamp refuses a version it does not serve, and the error says so.
    let mut config = self::config(&stub, IdentitySystem::Adfs, secret_auth());
    config.profile = ApiProfile::Hybrid20200901;
    let client = ArmClient::new(config).await.expect("client");
    let error = client.get_vm(RG, "vm0").await.expect_err("refused");
    assert_eq!(error.status(), Some(400));
    assert_eq!(error.code(), Some("InvalidApiVersionParameter"));
    assert!(error.to_string().contains("reading VM vm0"), "{error}");
    assert_eq!(
        client.api_version(ResourceType::VirtualMachines),
        "2020-06-01"
    );
}

fn lro_options() -> LroOptions {
    LroOptions {
        timeout: Duration::from_secs(10),
        default_interval: Duration::from_millis(20),
        min_interval: Duration::from_millis(10),
        cancel: None,
    }
}

#[tokio::test]
async fn lro_azure_async_operation_is_preferred_and_polled_to_success() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route(
        "DELETE",
        &vm_path("vm0"),
        vec![Reply::empty(202)
            .header("Azure-AsyncOperation", "{BASE}/subscriptions/s/providers/Microsoft.Compute/locations/local/operations/op1?api-version=2020-06-01")
            .header("Location", "{BASE}/location-should-not-be-used")
            .header("Retry-After", "0")],
    );
    stub.route(
        "GET",
        "/subscriptions/s/providers/Microsoft.Compute/locations/local/operations/op1",
        vec![
            Reply::json(200, json!({"status": "InProgress"})),
            Reply::json(200, json!({"status": "InProgress"})),
            Reply::json(200, json!({"status": "Succeeded"})),
        ],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    client
        .delete_vm(RG, "vm0", &lro_options())
        .await
        .expect("deleted");
    let paths: Vec<_> = stub
        .arm_requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(paths.len(), 4);
    assert!(
        paths[1..].iter().all(|p| p.ends_with("/operations/op1")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn lro_location_then_provisioning_state() {
    let stub = Stub::start().await;
    register_secret(&stub);
    // A NIC delete with only a Location header: 202 while running, then 404 = gone.
    let nic = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Network/networkInterfaces/nic0"
    );
    stub.route(
        "DELETE",
        &nic,
        vec![Reply::empty(202).header("Location", "{BASE}/operationResults/n1")],
    );
    stub.route(
        "GET",
        "/operationResults/n1",
        vec![Reply::empty(202), Reply::empty(404)],
    );
    // A deployment with neither header: its provisioningState is polled.
    let deployment = format!(
        "/subscriptions/{SUBSCRIPTION}/resourcegroups/{RG}/providers/Microsoft.Resources/deployments/d1"
    );
    stub.route(
        "PUT",
        &deployment,
        vec![Reply::json(
            201,
            json!({"name": "d1", "properties": {"provisioningState": "Accepted"}}),
        )],
    );
    stub.route(
        "GET",
        &deployment,
        vec![
            Reply::json(200, json!({"name": "d1", "properties": {"provisioningState": "Running"}})),
            Reply::json(200, json!({"name": "d1", "properties": {"provisioningState": "Succeeded", "outputs": {"x": {"value": 1}}}})),
        ],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    client
        .delete_nic(RG, "nic0", &lro_options())
        .await
        .expect("nic gone");
    let request = DeploymentRequest::incremental(json!({}), json!({}));
    let done = client
        .put_deployment(RG, "d1", &request, &lro_options())
        .await
        .expect("deployed");
    assert_eq!(done.properties.provisioning_state, "Succeeded");
    let put = stub
        .arm_requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("put");
    let body: serde_json::Value = serde_json::from_str(&put.body).expect("json");
    assert_eq!(body["properties"]["mode"], "Incremental");
    assert_eq!(
        stub.arm_requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == deployment)
            .count(),
        2
    );
}

#[tokio::test]
async fn lro_failure_deadline_and_cancel() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route(
        "DELETE",
        &vm_path("failing"),
        vec![Reply::empty(202).header("Azure-AsyncOperation", "{BASE}/ops/fail")],
    );
    stub.route(
        "GET",
        "/ops/fail",
        vec![
            Reply::json(200, json!({"status": "InProgress"})),
            Reply::json(200, json!({"status": "Failed", "error": {"code": "InternalOperationError", "message": "disk\nbusy"}})),
        ],
    );
    stub.route(
        "DELETE",
        &vm_path("slow"),
        vec![Reply::empty(202).header("Azure-AsyncOperation", "{BASE}/ops/slow")],
    );
    stub.route(
        "GET",
        "/ops/slow",
        vec![Reply::json(200, json!({"status": "InProgress"}))],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");

    let error = client
        .delete_vm(RG, "failing", &lro_options())
        .await
        .expect_err("failed");
    assert!(
        matches!(&error, Error::OperationFailed { status, .. } if status == "Failed"),
        "{error:?}"
    );
    assert_eq!(error.code(), Some("InternalOperationError"));
    assert!(
        error.to_string().contains("deleting VM failing")
            && error.to_string().contains("disk busy"),
        "{error}"
    );

    let options = lro_options().with_timeout(Duration::from_millis(300));
    let error = client
        .delete_vm(RG, "slow", &options)
        .await
        .expect_err("deadline");
    assert!(matches!(error, Error::Deadline { .. }), "{error:?}");

    let (handle, token) = cancel_pair();
    let options = lro_options().with_cancel(token);
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        handle.cancel();
    });
    let error = client
        .delete_vm(RG, "slow", &options)
        .await
        .expect_err("cancelled");
    assert!(matches!(error, Error::Cancelled { .. }), "{error:?}");
    canceller.await.expect("join");
}

#[tokio::test]
async fn a_429_storm_honours_retry_after() {
    let stub = Stub::start().await;
    register_secret(&stub);
    let throttled = |after: &str| {
        Reply::error(429, "TooManyRequests", "The request is being throttled.")
            .header("Retry-After", after)
    };
    stub.route(
        "GET",
        &vm_path("vm0"),
        vec![
            throttled("0.2"),
            throttled("0.6"),
            throttled("0.2"),
            Reply::json(200, vm("vm0")),
        ],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    client.get_vm(RG, "vm0").await.expect("eventually served");
    let times: Vec<_> = stub.arm_requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 4);
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // Each wait is at least what Retry-After asked, and the 0.6 s wait is about three times the 0.2 s ones.
    assert!(
        gaps[0] >= 0.2 && gaps[1] >= 0.6 && gaps[2] >= 0.2,
        "{gaps:?}"
    );
    let ratio = gaps[1] / gaps[0];
    assert!((2.0..4.0).contains(&ratio), "ratio {ratio} from {gaps:?}");
}

#[tokio::test]
async fn server_errors_are_retried_other_client_errors_are_not() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route(
        "GET",
        &vm_path("vm0"),
        vec![
            Reply::error(503, "ServiceUnavailable", "busy"),
            Reply::empty(500),
            Reply::error(
                429,
                "RetryableErrorDueToAnotherOperation",
                "another operation",
            ),
            Reply::json(200, vm("vm0")),
        ],
    );
    stub.route(
        "GET",
        &vm_path("bad"),
        vec![
            Reply::error(409, "Conflict", "no"),
            Reply::json(200, vm("bad")),
        ],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    assert!(client.get_vm(RG, "vm0").await.expect("served").is_some());
    assert_eq!(stub.arm_requests().len(), 4);
    let error = client.get_vm(RG, "bad").await.expect_err("409");
    assert_eq!(error.code(), Some("Conflict"));
    assert_eq!(stub.arm_requests().len(), 5, "a 409 is not retried");
    // A missing VM is None, not an error.
    assert!(client.get_vm(RG, "missing").await.expect("404").is_none());
}

#[tokio::test]
async fn retries_give_up_with_the_last_error() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route(
        "GET",
        &vm_path("vm0"),
        vec![Reply::error(503, "ServiceUnavailable", "still busy")],
    );
    let mut config = config(&stub, IdentitySystem::Adfs, secret_auth());
    config.http.retry.max_attempts = 3;
    let client = ArmClient::new(config).await.expect("client");
    let error = client.get_vm(RG, "vm0").await.expect_err("gave up");
    assert_eq!(error.status(), Some(503));
    assert!(error.is_retryable());
    assert_eq!(stub.arm_requests().len(), 3);
}

#[tokio::test]
async fn a_failed_deployment_is_explained_in_one_line() {
    let stub = Stub::start().await;
    register_secret(&stub);
    let deployment = format!(
        "/subscriptions/{SUBSCRIPTION}/resourcegroups/{RG}/providers/Microsoft.Resources/deployments/master-0-v1-24-6"
    );
    stub.route(
        "PUT",
        &deployment,
        vec![Reply::json(201, json!({"name": "master-0-v1-24-6", "properties": {"provisioningState": "Accepted"}}))
            .header("Azure-AsyncOperation", "{BASE}/deployments/master-0-v1-24-6/operationStatuses/42")],
    );
    stub.route(
        "GET",
        "/deployments/master-0-v1-24-6/operationStatuses/42",
        vec![Reply::json(200, json!({"status": "Failed", "error": {"code": "DeploymentFailed", "message": "At least one resource deployment operation failed."}}))],
    );
    stub.route(
        "GET",
        &deployment,
        vec![Reply::json(200, json!({"name": "master-0-v1-24-6", "properties": {"provisioningState": "Failed",
            "error": {"code": "DeploymentFailed", "message": "At least one resource deployment operation failed."}}}))],
    );
    let nested = json!({"error": {"code": "VMExtensionHandlerNonTransientError", "message": "Enable failed:\nexit status=50"}}).to_string();
    stub.route(
        "GET",
        &format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/{RG}/deployments/master-0-v1-24-6/operations"),
        vec![Reply::json(200, json!({"value": [
            {"operationId": "1", "properties": {"provisioningOperation": "Create", "provisioningState": "Succeeded",
              "targetResource": {"resourceType": "Microsoft.Network/networkInterfaces", "resourceName": "k8s-master-nic-0"}}}
        ], "nextLink": "{BASE}/ops-page-2"}))],
    );
    stub.route(
        "GET",
        "/ops-page-2",
        vec![Reply::json(200, json!({"value": [
            {"operationId": "2", "properties": {"provisioningOperation": "Create", "provisioningState": "Failed", "statusCode": "Conflict",
              "statusMessage": {"status": "Failed", "error": {"code": "ResourceDeploymentFailure", "message": "terminal state Failed",
                 "details": [{"code": "VMExtensionProvisioningError", "message": nested}]}},
              "targetResource": {"resourceType": "Microsoft.Compute/virtualMachines/extensions", "resourceName": "k8s-master-1234-0/cse-master-0"}}}
        ]}))],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    let request = DeploymentRequest::incremental(json!({"resources": []}), json!({}));
    let error = client
        .put_deployment(RG, "master-0-v1-24-6", &request, &lro_options())
        .await
        .expect_err("failed");
    assert_eq!(error.code(), Some("VMExtensionHandlerNonTransientError"));
    let line = error.to_string();
    assert_eq!(
        line,
        "deployment master-0-v1-24-6 in resource group kube-rg failed: Microsoft.Compute/virtualMachines/extensions k8s-master-1234-0/cse-master-0 (Create): VMExtensionHandlerNonTransientError: Enable failed: exit status=50"
    );
    assert!(!line.contains('\n'));
}

#[tokio::test]
async fn tls_needs_the_stamp_ca_and_ssl_cert_file_provides_it() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    // Without the CA: a TLS error, not retried, with a hint.
    let mut untrusted = config(&stub, IdentitySystem::Adfs, secret_auth());
    untrusted.http.ca_file = None;
    let client = ArmClient::new(untrusted).await.expect("client");
    let error = client.get_vm(RG, "vm0").await.expect_err("untrusted");
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
    assert!(
        stub.requests().is_empty(),
        "no request got through an untrusted TLS session"
    );

    // SSL_CERT_FILE (as HttpOptions::ssl_cert_file) adds the CA as well.
    let mut via_env = config(&stub, IdentitySystem::Adfs, secret_auth());
    via_env.http.ca_file = None;
    via_env.http.ssl_cert_file = Some(stub.ca_path().to_owned());
    let client = ArmClient::new(via_env).await.expect("client");
    assert!(client.get_vm(RG, "vm0").await.expect("trusted").is_some());

    // A CA file that is not PEM is reported at construction.
    let bogus = stub.dir().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").expect("write");
    let mut bad = config(&stub, IdentitySystem::Adfs, secret_auth());
    bad.http.ca_file = Some(bogus);
    let error = ArmClient::new(bad).await.expect_err("bad ca");
    assert!(error.to_string().contains("--ca-file"), "{error}");
}

#[tokio::test]
async fn next_links_to_another_host_are_refused() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route(
        "GET",
        &vms_path(),
        vec![Reply::json(
            200,
            json!({"value": [vm("a")], "nextLink": "https://evil.example/steal?x=1"}),
        )],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    let error = client.list_vms(RG).await.expect_err("refused");
    assert!(
        error.to_string().contains("refusing to send the token"),
        "{error}"
    );
}

#[tokio::test]
async fn debug_output_never_shows_the_secret() {
    let stub = Stub::start().await;
    register_secret(&stub);
    let config = config(&stub, IdentitySystem::Adfs, secret_auth());
    assert!(!format!("{config:?}").contains(SECRET));
    let client = ArmClient::new(config).await.expect("client");
    let shown = format!("{client:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("adfs"), "{shown}");
}

/// A TCP endpoint that counts connections and either drops them at once or holds them silently.
async fn counting_listener(hold: bool) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if hold {
                held.push(socket);
            } else {
                drop(socket);
            }
        }
    });
    (format!("https://127.0.0.1:{port}"), count)
}

fn config_at(stub: &Stub, base: &str) -> ArmConfig {
    let mut config = config(stub, IdentitySystem::Adfs, secret_auth());
    config.environment.resource_manager_endpoint = format!("{base}/");
    config.environment.active_directory_endpoint = format!("{base}/adfs/");
    config.http.retry.max_attempts = 3;
    config
}

#[tokio::test]
async fn connection_resets_are_retried_then_reported() {
    let stub = Stub::start().await;
    let (base, count) = counting_listener(false).await;
    let client = ArmClient::new(config_at(&stub, &base))
        .await
        .expect("client");
    let error = client.get_vm(RG, "vm0").await.expect_err("reset");
    assert!(
        matches!(
            error,
            Error::Transport {
                kind: TransportKind::Reset | TransportKind::Connect,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "three attempts"
    );
    assert!(error.to_string().contains("getting a token"), "{error}");
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let stub = Stub::start().await;
    let (base, count) = counting_listener(true).await;
    let mut config = config_at(&stub, &base);
    config.http.request_timeout = Duration::from_millis(200);
    config.http.retry.max_attempts = 2;
    let client = ArmClient::new(config).await.expect("client");
    let error = client.get_vm(RG, "vm0").await.expect_err("timeout");
    assert!(
        matches!(
            error,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "two attempts"
    );
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    client.get_vm(RG, "vm0").await.expect("get");
    stub.revoke_tokens();
    client
        .get_vm(RG, "vm0")
        .await
        .expect("get after revocation");
    let auth: Vec<_> = stub
        .arm_requests()
        .iter()
        .map(|r| r.headers["authorization"].clone())
        .collect();
    assert_eq!(auth, ["Bearer token-1", "Bearer token-1", "Bearer token-2"]);
}

#[tokio::test]
async fn the_environment_is_discovered_from_the_portal_url() {
    let stub = Stub::start().await;
    stub.route(
        "GET",
        "/metadata/endpoints",
        vec![Reply::json(
            200,
            json!({"galleryEndpoint": "https://gallery/", "graphEndpoint": "https://graph/", "portalEndpoint": "https://portal/",
                   "authentication": {"loginEndpoint": "https://adfs.local.azurestack.external/adfs/", "audiences": [AUDIENCE]}}),
        )],
    );
    let port = stub.addr().port();
    let custom = aksup::model::CustomCloudProfile {
        environment: None,
        identity_system: "adfs".into(),
        authentication_method: "client_secret".into(),
        portal_url: format!("https://portal.local.azurestack.external:{port}/"),
    };
    let http = HttpOptions {
        ca_file: Some(stub.ca_path().to_owned()),
        resolve: vec![(arm_stub::STAMP_ARM_HOST.to_owned(), stub.addr())],
        retry: fast_retry(),
        ..HttpOptions::default()
    };
    let env = ArmClient::resolve_environment(None, Some(&custom), &http)
        .await
        .expect("discovered");
    assert_eq!(
        env.resource_manager_endpoint,
        format!("https://management.local.azurestack.external:{port}/")
    );
    assert_eq!(env.token_audience, AUDIENCE);
    assert!(env.login_is_adfs());
    assert_eq!(
        env.resource_manager_vm_dns_suffix,
        "cloudapp.azurestack.external"
    );
    let request = &stub.requests()[0];
    assert_eq!(request.path, "/metadata/endpoints");
    assert_eq!(request.api_version(), Some("2015-01-01"));
    assert!(!request.headers.contains_key("authorization"));
}

/// The credential is a plain `azure_core` `TokenCredential`: it plugs into an
/// `azure_core` pipeline with `BearerTokenAuthorizationPolicy`, as SDK clients use it.
#[tokio::test]
async fn the_credential_works_in_an_azure_core_pipeline() {
    use azure_core::http::policies::Policy;
    use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
    use azure_core::http::{
        ClientOptions, Context, Method, Pipeline, Request, RetryOptions, Transport,
    };
    use std::sync::Arc;

    let stub = Stub::start().await;
    let cert = client_certificate("pipeline-sp");
    register_cert(&stub, &cert);
    stub.route("GET", &vm_path("vm0"), vec![Reply::json(200, vm("vm0"))]);
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, cert_auth(&stub, &cert)))
        .await
        .expect("client");
    let credential: Arc<dyn azure_core::credentials::TokenCredential> =
        client.credential().expect("own credential").clone();

    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(stub.ca_path()).expect("ca")).expect("pem");
    let http = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .expect("reqwest");
    let options = ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        retry: RetryOptions::none(),
        ..ClientOptions::default()
    };
    let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(
        credential,
        [format!("{AUDIENCE}/.default")],
    ));
    let pipeline = Pipeline::new(
        Some("aksup-test"),
        Some("0"),
        options,
        Vec::new(),
        vec![auth],
        None,
    );
    let url = format!("{}{}?api-version=2020-06-01", stub.base(), vm_path("vm0"));
    let mut request = Request::new(url.parse().expect("url"), Method::Get);
    let response = pipeline
        .send(&Context::new(), &mut request, None)
        .await
        .expect("sent");
    assert_eq!(u16::from(response.status()), 200);
    let last = stub.arm_requests().pop().expect("request");
    assert_eq!(last.headers["authorization"], "Bearer token-1");
    assert_eq!(stub.token_requests()[0].form()["resource"], AUDIENCE);
}

#[tokio::test]
async fn lro_polling_honours_retry_after() {
    let stub = Stub::start().await;
    register_secret(&stub);
    stub.route(
        "DELETE",
        &vm_path("vm0"),
        vec![
            Reply::empty(202)
                .header("Azure-AsyncOperation", "{BASE}/ops/paced")
                .header("Retry-After", "0.4"),
        ],
    );
    stub.route(
        "GET",
        "/ops/paced",
        vec![
            Reply::json(200, json!({"status": "InProgress"})),
            Reply::json(200, json!({"status": "InProgress"})).header("Retry-After", "0.4"),
            Reply::json(200, json!({"status": "Succeeded"})),
        ],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    client
        .delete_vm(RG, "vm0", &lro_options())
        .await
        .expect("deleted");
    let times: Vec<_> = stub.arm_requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 4);
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // Waits after a Retry-After of 0.4 s; the one without it uses the 20 ms default interval.
    assert!(gaps[0] >= 0.4 && gaps[2] >= 0.4, "{gaps:?}");
    assert!(
        gaps[0] / gaps[1] > 4.0 && gaps[2] / gaps[1] > 4.0,
        "{gaps:?}"
    );
}

#[tokio::test]
async fn a_refused_deployment_names_the_innermost_cause() {
    let stub = Stub::start().await;
    register_secret(&stub);
    let deployment = format!(
        "/subscriptions/{SUBSCRIPTION}/resourcegroups/{RG}/providers/Microsoft.Resources/deployments/bad-template"
    );
    stub.route(
        "PUT",
        &deployment,
        vec![Reply::json(
            400,
            json!({"error": {"code": "InvalidTemplateDeployment", "message": "The template deployment 'bad-template' is not valid according to the validation procedure.",
                   "details": [{"code": "OperationNotAllowed", "message": "Operation results in exceeding quota limits of Core. Maximum allowed: 100"}]}}),
        )],
    );
    let client = ArmClient::new(config(&stub, IdentitySystem::Adfs, secret_auth()))
        .await
        .expect("client");
    let request = DeploymentRequest::incremental(json!({}), json!({}));
    let error = client
        .put_deployment(RG, "bad-template", &request, &lro_options())
        .await
        .expect_err("refused");
    assert_eq!(error.status(), Some(400));
    assert_eq!(error.code(), Some("InvalidTemplateDeployment"));
    assert_eq!(
        error.to_string(),
        "deploying bad-template to resource group kube-rg: 400 InvalidTemplateDeployment: The template deployment 'bad-template' is not valid according to the validation procedure.; caused by OperationNotAllowed: Operation results in exceeding quota limits of Core. Maximum allowed: 100 (request id req-0001)"
    );
    assert_eq!(stub.arm_requests().len(), 1, "a 400 is not retried");
}
