//! The simulator's ARM listener over real HTTPS: metadata, identity, api-version
//! enforcement, reads, paging, deletes as long-running operations, errors, headers.

#[path = "sim_common/mod.rs"]
mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn metadata_names_the_login_endpoint_and_audience() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::new(&sim);
    let answer = arm.get("/metadata/endpoints?api-version=1.0").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body["authentication"]["loginEndpoint"],
        json!(sim.endpoints.arm_url)
    );
    assert_eq!(
        answer.body["authentication"]["audiences"][0],
        json!(sim.endpoints.audience)
    );
    assert!(answer.body.get("resourceManager").is_none());
    let answer = arm.get("/metadata/endpoints?api-version=2015-01-01").await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = arm.get("/metadata/endpoints?api-version=2099-01-01").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unauthenticated_subscription_get_names_the_tenant() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::new(&sim);
    let answer = arm
        .get(&format!(
            "/subscriptions/{}?api-version=2016-06-01",
            sim.endpoints.subscription_id
        ))
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error_code(), "AuthenticationFailed");
    let challenge = answer.header("www-authenticate").expect("a challenge");
    let expected = format!(
        "Bearer authorization_uri=\"{}\"",
        sim.endpoints.aad.authority
    );
    assert!(challenge.starts_with(&expected), "{challenge}");

    // A made-up token is refused too, and so is every other ARM call without one.
    let mut stranger = Arm::new(&sim);
    stranger.token = Some("not-a-token".into());
    let answer = stranger.get(&stranger.vm_path("k8s-master-x-0")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error_code(), "InvalidAuthenticationToken");
    sim.shutdown().await;
}

#[tokio::test]
async fn aad_v1_and_v2_issue_tokens_for_the_configured_secret_only() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::new(&sim);
    let e = &sim.endpoints;
    let v1 = arm
        .form(
            &e.aad.token_url_v1,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_secret", &e.client_secret),
                ("resource", &e.audience),
            ],
        )
        .await;
    assert_eq!(v1.status, StatusCode::OK, "{}", v1.body);
    assert!(
        v1.body["expires_in"].is_string(),
        "v1 sends expires_in as a string: {}",
        v1.body
    );
    assert_eq!(v1.body["token_type"], "Bearer");

    let v2 = arm
        .form(
            &e.aad.token_url_v2,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_secret", &e.client_secret),
                ("scope", &format!("{}/.default", e.audience)),
            ],
        )
        .await;
    assert_eq!(v2.status, StatusCode::OK, "{}", v2.body);
    assert!(v2.body["expires_in"].is_number());

    let wrong = arm
        .form(
            &e.aad.token_url_v2,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_secret", "wrong"),
                ("scope", &format!("{}/.default", e.audience)),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "invalid_client");
    assert!(
        wrong.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215: Invalid client secret provided.")
    );
    assert_eq!(wrong.body["error_codes"], json!([7000215]));

    let stranger = arm
        .form(
            &e.aad.token_url_v1,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "11111111-2222-3333-4444-555555555555"),
                ("client_secret", &e.client_secret),
                ("resource", &e.audience),
            ],
        )
        .await;
    assert_eq!(stranger.status, StatusCode::BAD_REQUEST);
    assert_eq!(stranger.body["error"], "unauthorized_client");

    let wrong_audience = arm
        .form(
            &e.aad.token_url_v1,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_secret", &e.client_secret),
                ("resource", "https://management.azure.com/"),
            ],
        )
        .await;
    assert_eq!(wrong_audience.body["error"], "invalid_resource");

    let wrong_tenant = arm
        .form(
            &e.aad
                .token_url_v1
                .replace(&e.aad.tenant_id, "contoso.onmicrosoft.com"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_secret", &e.client_secret),
                ("resource", &e.audience),
            ],
        )
        .await;
    assert_eq!(wrong_tenant.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong_tenant.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002")
    );

    // The token opens the ARM API.
    let mut client = Arm::new(&sim);
    client.token = Some(v1.body["access_token"].as_str().unwrap().to_owned());
    let answer = client
        .get(&format!(
            "/subscriptions/{}?api-version=2016-06-01",
            e.subscription_id
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["tenantId"], json!(e.aad.tenant_id));
    sim.shutdown().await;
}

/// A JWT client assertion signed with the service principal's key.
fn assertion(key_pem: &str, cert_pem: &str, audience: &str, issuer: &str, alg: &str) -> String {
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair};
    let b64 = |data: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    };
    let der = aksup::sim::tls::pem_to_der(cert_pem).unwrap();
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if alg == "PS256" {
        header["x5t#S256"] = json!(b64(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &der
        )
        .as_ref()));
    } else {
        header["x5t"] = json!(b64(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &der
        )
        .as_ref()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"aud": audience, "iss": issuer, "sub": issuer, "jti": "1", "nbf": now, "exp": now + 600});
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key_der = {
        use base64::Engine as _;
        let body: String = key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    let key = RsaKeyPair::from_pkcs8(&key_der).unwrap();
    let mut signature = vec![0; key.public_modulus_len()];
    let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = if alg == "PS256" {
        &RSA_PSS_SHA256
    } else {
        &RSA_PKCS1_SHA256
    };
    key.sign(
        padding,
        &aws_lc_rs::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{signed}.{}", b64(&signature))
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[tokio::test]
async fn certificate_assertions_are_verified_against_the_registered_certificate() {
    let sim = start("windows-1-master-adfs.json", |_| {}).await;
    let arm = Arm::new(&sim);
    let e = &sim.endpoints;
    assert_eq!(e.identity_system, "adfs");
    assert_eq!(e.authentication_method, "client_certificate");

    // AAD: PS256 with x5t#S256.
    let aad = assertion(
        &e.client_private_key_pem,
        &e.client_certificate_pem,
        &e.aad.token_url_v2,
        &e.client_id,
        "PS256",
    );
    let answer = arm
        .form(
            &e.aad.token_url_v2,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &aad),
                ("scope", &format!("{}/.default", e.audience)),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // ADFS: RS256 with x5t, v1 form with resource.
    let adfs = assertion(
        &e.client_private_key_pem,
        &e.client_certificate_pem,
        &e.adfs.token_url,
        &e.client_id,
        "RS256",
    );
    let answer = arm
        .form(
            &e.adfs.token_url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &adfs),
                ("resource", &e.audience),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["expires_in"], json!("3599"));

    // ADFS refuses PS256.
    let answer = arm
        .form(
            &e.adfs.token_url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &aad),
                ("resource", &e.audience),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.body["error"], "invalid_client");
    assert!(
        answer.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("MSIS")
    );

    // A certificate the stamp does not know.
    let other = aksup::sim::tls::Pki::issue_service_principal("someone-else").unwrap();
    let forged = assertion(
        &other.key_pem,
        &other.cert_pem,
        &e.aad.token_url_v2,
        &e.client_id,
        "PS256",
    );
    let answer = arm
        .form(
            &e.aad.token_url_v2,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &forged),
                ("scope", &format!("{}/.default", e.audience)),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700027")
    );

    // The registered thumbprint with another key: the signature check fails.
    let tampered = assertion(
        &other.key_pem,
        &e.client_certificate_pem,
        &e.aad.token_url_v2,
        &e.client_id,
        "PS256",
    );
    let answer = arm
        .form(
            &e.aad.token_url_v2,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &e.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &tampered),
                ("scope", &format!("{}/.default", e.audience)),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature validation"),
        "{}",
        answer.body
    );

    // Discovery documents.
    let config = arm.get(&e.adfs.openid_configuration).await;
    assert_eq!(
        config.body["token_endpoint"],
        json!(format!("{}/", e.adfs.token_url))
    );
    let config = arm
        .get(&format!(
            "{}/v2.0/.well-known/openid-configuration",
            e.aad.authority
        ))
        .await;
    assert_eq!(config.body["token_endpoint"], json!(e.aad.token_url_v2));
    // The metadata endpoint of an ADFS stamp points at ADFS.
    let metadata = arm.get("/metadata/endpoints?api-version=1.0").await;
    assert_eq!(
        metadata.body["authentication"]["loginEndpoint"],
        json!(format!("{}/", e.adfs.authority))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn api_versions_follow_the_profile() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let list = arm.rg("providers/Microsoft.Compute/virtualMachines");
    assert_eq!(
        arm.get(&format!("{list}?api-version=2020-06-01"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        arm.get(&format!("{list}?api-version=2017-12-01"))
            .await
            .status,
        StatusCode::OK
    );
    let answer = arm.get(&format!("{list}?api-version=2021-03-01")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "NoRegisteredProviderFound");
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'2017-12-01, 2020-06-01'"),
        "{}",
        answer.body
    );
    let answer = arm.get(&list).await;
    assert_eq!(answer.error_code(), "MissingApiVersionParameter");
    let answer = arm
        .get(&arm.rg("providers/Microsoft.Compute/disks?api-version=2020-06-01"))
        .await;
    assert_eq!(answer.error_code(), "NoRegisteredProviderFound");
    let answer = arm
        .get(&format!(
            "/subscriptions/{}/resourcegroups/{}?api-version=2021-04-01",
            arm.subscription, arm.resource_group
        ))
        .await;
    assert_eq!(answer.error_code(), "InvalidApiVersionParameter");
    sim.shutdown().await;

    let sim = start("linux-3-masters.json", |o| {
        o.profile = aksup::sim::Profile::Hybrid20190301
    })
    .await;
    let arm = Arm::login(&sim).await;
    let list = arm.rg("providers/Microsoft.Compute/virtualMachines");
    let answer = arm.get(&format!("{list}?api-version=2020-06-01")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'2017-12-01'")
    );
    assert_eq!(
        arm.get(&format!("{list}?api-version=2017-12-01"))
            .await
            .status,
        StatusCode::OK
    );
    let nics = arm.rg("providers/Microsoft.Network/networkInterfaces");
    assert_eq!(
        arm.get(&format!("{nics}?api-version=2018-11-01"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        arm.get(&format!("{nics}?api-version=2017-10-01"))
            .await
            .status,
        StatusCode::OK
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn vm_lists_are_paged_with_absolute_next_links() {
    let sim = start("linux-3-masters.json", |o| o.page_size = 3).await;
    let arm = Arm::login(&sim).await;
    let mut url = arm.rg(&format!(
        "providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE}"
    ));
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let answer = arm.get(&url).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        pages += 1;
        for vm in answer.body["value"].as_array().unwrap() {
            names.push(vm["name"].as_str().unwrap().to_owned());
        }
        match answer.body["nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with(&sim.endpoints.arm_url),
                    "absolute nextLink: {next}"
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 8, "3 masters + 3 linuxpool + 2 batch");
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 8);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_vm_reads_as_aks_engine_deployed_it() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let suffix = aksup::sim::seed::name_suffix("simlinux");
    let name = format!("k8s-master-{suffix}-1");
    // Paths and names are case-insensitive.
    let path = format!(
        "/subscriptions/{}/RESOURCEGROUPS/{}/providers/microsoft.compute/VirtualMachines/{}?api-version={COMPUTE}&$expand=instanceView",
        arm.subscription,
        arm.resource_group.to_uppercase(),
        name.to_uppercase()
    );
    let answer = arm.get(&path).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let vm = &answer.body;
    assert_eq!(vm["name"], json!(name));
    assert_eq!(vm["type"], "Microsoft.Compute/virtualMachines");
    assert_eq!(vm["tags"]["orchestrator"], "Kubernetes:1.33.10");
    assert_eq!(vm["tags"]["poolName"], "master");
    assert_eq!(vm["tags"]["resourceNameSuffix"], json!(suffix));
    assert_eq!(vm["tags"]["aksEngineVersion"], "v0.85.0");
    assert_eq!(
        vm["tags"]["creationSource"],
        json!(format!("aksengine-{name}"))
    );
    let props = &vm["properties"];
    assert_eq!(props["provisioningState"], "Succeeded");
    assert_eq!(props["hardwareProfile"]["vmSize"], "Standard_DS2_v2");
    assert_eq!(
        props["storageProfile"]["imageReference"]["sku"],
        "aks-engine-azurestack-ubuntu-2204"
    );
    assert_eq!(
        props["storageProfile"]["osDisk"]["managedDisk"]["storageAccountType"],
        "Premium_LRS"
    );
    assert_eq!(
        props["storageProfile"]["dataDisks"][0]["name"],
        json!(format!("k8s-master-{suffix}-1-etcddisk"))
    );
    assert!(
        props["availabilitySet"]["id"]
            .as_str()
            .unwrap()
            .ends_with(&format!("MASTER-AVAILABILITYSET-{suffix}"))
    );
    assert!(
        props["networkProfile"]["networkInterfaces"][0]["id"]
            .as_str()
            .unwrap()
            .ends_with(&format!("k8s-master-{suffix}-nic-1"))
    );
    assert!(props["osProfile"].get("customData").is_none());
    let statuses = props["instanceView"]["statuses"].as_array().unwrap();
    assert_eq!(statuses[0]["code"], "ProvisioningState/succeeded");
    assert_eq!(statuses[1]["code"], "PowerState/running");
    // Without $expand there is no instance view.
    let plain = arm.get(&arm.vm_path(&name)).await;
    assert!(plain.body["properties"].get("instanceView").is_none());

    // The NIC carries the static master IP.
    let nic = arm
        .get(&arm.rg(&format!("providers/Microsoft.Network/networkInterfaces/k8s-master-{suffix}-nic-1?api-version={NETWORK}")))
        .await;
    let ip = &nic.body["properties"]["ipConfigurations"][0]["properties"];
    assert_eq!(ip["privateIPAddress"], "10.240.255.6");
    assert_eq!(ip["privateIPAllocationMethod"], "Static");

    // Response headers.
    for header in [
        "x-ms-request-id",
        "x-ms-correlation-request-id",
        "x-ms-ratelimit-remaining-subscription-reads",
    ] {
        assert!(answer.header(header).is_some(), "missing {header}");
    }
    // Not found.
    let missing = arm.get(&arm.vm_path("k8s-master-00000000-9")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "ResourceNotFound");
    let wrong_rg = arm
        .get(&format!("/subscriptions/{}/resourceGroups/other/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE}", arm.subscription))
        .await;
    assert_eq!(wrong_rg.error_code(), "ResourceGroupNotFound");
    sim.shutdown().await;
}

#[tokio::test]
async fn marketplace_images_can_be_checked() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let path = |version: &str| {
        format!(
            "/subscriptions/{}/providers/Microsoft.Compute/locations/{}/publishers/microsoft-aks/artifacttypes/vmimage/offers/aks/skus/aks-engine-azurestack-ubuntu-2204/versions/{version}?api-version={COMPUTE}",
            arm.subscription, arm.location
        )
    };
    let answer = arm.get(&path("2026.139.1")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["name"], "2026.139.1");
    assert_eq!(
        answer.body["properties"]["osDiskImage"]["operatingSystem"],
        "Linux"
    );
    let answer = arm.get(&path("2020.1.1")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error_code(), "NotFound");
    sim.shutdown().await;
}

#[tokio::test]
async fn deletes_are_long_running_and_keep_the_etcd_disk() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let suffix = aksup::sim::seed::name_suffix("simlinux");
    let vm = format!("k8s-master-{suffix}-0");
    let nic_path = arm.rg(&format!("providers/Microsoft.Network/networkInterfaces/k8s-master-{suffix}-nic-0?api-version={NETWORK}"));
    let os_disk = aksup::sim::seed::os_disk_name(&vm);
    let etcd = format!("k8s-master-{suffix}-0-etcddisk");
    let disk_path = |name: &str| {
        arm.rg(&format!(
            "providers/Microsoft.Compute/disks/{name}?api-version={DISKS}"
        ))
    };

    // The NIC and the disks of a live VM cannot go.
    let refused = arm.delete(&nic_path).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_code(), "NicInUse");
    let refused = arm.delete(&disk_path(&os_disk)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.error_code(), "OperationNotAllowed");

    let answer = arm.delete(&arm.vm_path(&vm)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let status_url = answer
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation");
    let location = answer.header("location").expect("Location");
    assert!(answer.header("retry-after").is_some());
    assert!(status_url.starts_with(&sim.endpoints.arm_url));
    // Deleting shows on the VM and InProgress on the operation.
    let during = arm.get(&arm.vm_path(&vm)).await;
    assert_eq!(during.body["properties"]["provisioningState"], "Deleting");
    let first = arm.get(&status_url).await;
    assert_eq!(
        first.body["status"], "InProgress",
        "{} {} {}",
        first.status, first.body, status_url
    );
    let pending = arm.get(&location).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED);
    let done = arm.wait_async(&status_url).await;
    assert_eq!(done["status"], "Succeeded");
    assert!(done["endTime"].is_string());
    assert_eq!(arm.get(&location).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        arm.get(&arm.vm_path(&vm)).await.status,
        StatusCode::NOT_FOUND
    );
    // Deleting what is gone is a 204.
    assert_eq!(
        arm.delete(&arm.vm_path(&vm)).await.status,
        StatusCode::NO_CONTENT
    );

    // Now NIC and OS disk go; the etcd disk stays, unattached.
    let answer = arm.delete(&nic_path).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let nic_status = answer.header("azure-asyncoperation").unwrap();
    assert!(nic_status.contains("/providers/Microsoft.Network/locations/"));
    assert!(
        answer
            .header("location")
            .unwrap()
            .contains("/operationResults/")
    );
    assert_eq!(arm.wait_async(&nic_status).await["status"], "Succeeded");
    assert_eq!(arm.get(&nic_path).await.status, StatusCode::NOT_FOUND);
    let answer = arm.delete(&disk_path(&os_disk)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    arm.wait_async(&answer.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(
        arm.get(&disk_path(&os_disk)).await.status,
        StatusCode::NOT_FOUND
    );
    let etcd_disk = arm.get(&disk_path(&etcd)).await;
    assert_eq!(etcd_disk.status, StatusCode::OK);
    assert_eq!(etcd_disk.body["properties"]["diskState"], "Unattached");
    assert!(etcd_disk.body.get("managedBy").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn the_request_log_counts_endpoints_and_the_state_has_no_secrets() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let suffix = aksup::sim::seed::name_suffix("simlinux");
    for _ in 0..3 {
        arm.get(&arm.vm_path(&format!("k8s-linuxpool-{suffix}-0")))
            .await;
    }
    let endpoint = "GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/virtualMachines/{vmName}";
    assert_eq!(sim.world().requests().count(endpoint), 3);
    let log = arm.get("/_sim/requests").await;
    assert_eq!(log.body["counts"][endpoint], 3);
    assert_eq!(log.body["counts"]["POST /{tenant}/oauth2/v2.0/token"], 1);
    let last = log.body["requests"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["status"], 200);
    assert!(last["latencyMs"].is_number());

    let state = arm.get("/_sim/state").await;
    assert_eq!(state.status, StatusCode::OK);
    let text = state.body.to_string();
    assert!(!text.contains(&sim.endpoints.client_secret));
    assert!(!text.contains(arm.token.as_deref().unwrap()));
    assert!(!text.contains("PRIVATE KEY"));
    let vms = state.body["arm"]["virtualMachines"].as_object().unwrap();
    assert_eq!(vms.len(), 8);
    assert!(state.body["clock"]["scale"].as_f64().unwrap() >= 1000.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_kubernetes_listener_takes_client_certificates_from_the_sim_ca_only() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let e = &sim.endpoints;
    let ca = reqwest::Certificate::from_pem(e.ca_pem.as_bytes()).unwrap();
    // The kubeconfig's client certificate is accepted in the handshake.
    let kubeconfig: String = e.kubeconfig.clone();
    let field = |name: &str| {
        let line = kubeconfig
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap();
        let value = line.split_once(": ").unwrap().1.trim();
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap()
    };
    let mut identity_pem = field("client-certificate-data:");
    identity_pem.extend(field("client-key-data:"));
    let client = reqwest::Client::builder()
        .tls_certs_only([ca.clone()])
        .identity(reqwest::Identity::from_pem(&identity_pem).unwrap())
        .build()
        .unwrap();
    let answer = client.get(format!("{}/version", e.kube_url)).send().await;
    assert!(
        answer.is_ok(),
        "the handshake with the sim-issued certificate succeeds: {answer:?}"
    );
    // No certificate at all is fine too (bearer tokens).
    let anonymous = reqwest::Client::builder()
        .tls_certs_only([ca.clone()])
        .build()
        .unwrap();
    assert!(
        anonymous
            .get(format!("{}/version", e.kube_url))
            .send()
            .await
            .is_ok()
    );
    // A certificate from another CA is refused in the handshake.
    let other = aksup::sim::tls::Pki::generate().unwrap();
    let stranger_cert = other.issue_client("intruder", None).unwrap();
    let mut stranger_pem = stranger_cert.cert_pem.into_bytes();
    stranger_pem.extend(stranger_cert.key_pem.into_bytes());
    let stranger = reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(reqwest::Identity::from_pem(&stranger_pem).unwrap())
        .build()
        .unwrap();
    assert!(
        stranger
            .get(format!("{}/version", e.kube_url))
            .send()
            .await
            .is_err()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn verified_client_certificates_mark_requests() {
    use aksup::sim::tls::{ClientCertVerified, Pki, serve};
    let pki = Pki::generate().unwrap();
    let router = axum::Router::new().route(
        "/whoami",
        axum::routing::get(|request: axum::extract::Request| async move {
            request
                .extensions()
                .get::<ClientCertVerified>()
                .map(|c| c.common_name.clone())
                .unwrap_or_else(|| "anonymous".into())
        }),
    );
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listener = serve(socket, router, pki.server_config(true).unwrap()).unwrap();
    let ca = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap();
    let client_cert = pki
        .issue_client("masterclient", Some("system:masters"))
        .unwrap();
    let mut pem = client_cert.cert_pem.into_bytes();
    pem.extend(client_cert.key_pem.into_bytes());
    let with_cert = reqwest::Client::builder()
        .tls_certs_only([ca.clone()])
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/whoami", listener.addr.port());
    assert_eq!(
        with_cert
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "masterclient"
    );
    let without = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    assert_eq!(
        without
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "anonymous"
    );
    listener.handle.shutdown();
}

#[allow(dead_code)]
fn _unused(_: Value) {}
