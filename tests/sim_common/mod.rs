//! Helpers of the simulator tests: start a simulator on port 0 and talk to its
//! ARM listener over real HTTPS, trusting only the simulator's CA.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use aksup::model::ApiModel;
use aksup::sim::{SimOptions, Simulator};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const COMPUTE: &str = "2020-06-01";
pub const NETWORK: &str = "2018-11-01";
pub const DISKS: &str = "2019-07-01";
pub const RESOURCES: &str = "2019-10-01";

pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/sim")
        .join(name)
}

pub fn load(name: &str) -> ApiModel {
    ApiModel::load(&testdata(name)).expect("a test apimodel")
}

/// Starts a simulator for `testdata/sim/<name>` at 1000× speed.
pub async fn start(name: &str, configure: impl FnOnce(&mut SimOptions)) -> Simulator {
    let mut options = SimOptions::new(load(name));
    options.time_scale = 1000.0;
    options.retry_after = Some(1);
    configure(&mut options);
    Simulator::start(options)
        .await
        .expect("the simulator starts")
}

/// An HTTPS client of the ARM listener.
pub struct Arm {
    pub http: reqwest::Client,
    pub base: String,
    pub subscription: String,
    pub resource_group: String,
    pub location: String,
    pub token: Option<String>,
    pub endpoints: aksup::sim::Endpoints,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn error_code(&self) -> String {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("a PEM CA")])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("a client")
}

impl Arm {
    pub fn new(sim: &Simulator) -> Self {
        let e = &sim.endpoints;
        Self {
            http: https_client(&e.ca_pem),
            base: e.arm_url.trim_end_matches('/').to_owned(),
            subscription: e.subscription_id.clone(),
            resource_group: e.resource_group.clone(),
            location: e.location.clone(),
            token: None,
            endpoints: e.clone(),
        }
    }

    /// A client that already holds a token (AAD v2, client secret).
    pub async fn login(sim: &Simulator) -> Self {
        let mut arm = Self::new(sim);
        let answer = arm
            .form(
                &sim.endpoints.aad.token_url_v2,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &sim.endpoints.client_id),
                    ("client_secret", &sim.endpoints.client_secret),
                    ("scope", &format!("{}/.default", sim.endpoints.audience)),
                ],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        arm.token = Some(
            answer.body["access_token"]
                .as_str()
                .expect("a token")
                .to_owned(),
        );
        arm
    }

    /// `subscriptions/{s}/resourceGroups/{rg}/<rest>`.
    pub fn rg(&self, rest: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/{rest}",
            self.subscription, self.resource_group
        )
    }

    pub fn vm_path(&self, name: &str) -> String {
        self.rg(&format!(
            "providers/Microsoft.Compute/virtualMachines/{name}?api-version={COMPUTE}"
        ))
    }

    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{}", self.base, path_or_url)
        }
    }

    pub async fn call(&self, method: Method, path_or_url: &str, body: Option<&Value>) -> Answer {
        let mut request = self.http.request(method, self.url(path_or_url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path_or_url: &str) -> Answer {
        self.call(Method::GET, path_or_url, None).await
    }

    pub async fn delete(&self, path_or_url: &str) -> Answer {
        self.call(Method::DELETE, path_or_url, None).await
    }

    pub async fn put(&self, path_or_url: &str, body: &Value) -> Answer {
        self.call(Method::PUT, path_or_url, Some(body)).await
    }

    pub async fn form(&self, url: &str, fields: &[(&str, &str)]) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .http
            .post(self.url(url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("the simulator answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Polls an `Azure-AsyncOperation` URL until a terminal status; returns the last body.
    pub async fn wait_async(&self, url: &str) -> Value {
        for _ in 0..400 {
            let answer = self.get(url).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            let status = answer.body["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if matches!(status.as_str(), "Succeeded" | "Failed" | "Canceled") {
                return answer.body;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the operation at {url} did not finish");
    }

    /// PUTs a deployment and waits for it to end; returns the final status body.
    pub async fn deploy(&self, name: &str, template: Value) -> Value {
        let path = self.deployment_path(name);
        let answer = self
            .put(&path, &json!({"properties": {"mode": "Incremental", "template": template, "parameters": {}}}))
            .await;
        assert!(
            answer.status == StatusCode::CREATED || answer.status == StatusCode::OK,
            "{}",
            answer.body
        );
        let status_url = answer
            .header("azure-asyncoperation")
            .expect("an Azure-AsyncOperation header");
        self.wait_async(&status_url).await
    }

    pub fn deployment_path(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.Resources/deployments/{name}?api-version={RESOURCES}",
            self.subscription, self.resource_group
        )
    }
}

/// Waits (real time, bounded) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A literal-valued template for one node VM (NIC + VM + extension), as the
/// node template is expected to render it.
pub struct NodeVm<'a> {
    pub arm: &'a Arm,
    pub vm: String,
    pub nic: String,
    pub pool: &'a str,
    pub version: &'a str,
    pub static_ip: Option<&'a str>,
    pub image: Value,
    pub data_disks: Value,
    pub custom_data: Option<String>,
    pub node_block: Option<Value>,
}

impl<'a> NodeVm<'a> {
    pub fn agent(arm: &'a Arm, vm: &str, nic: &str, pool: &'a str, version: &'a str) -> Self {
        Self {
            arm,
            vm: vm.to_owned(),
            nic: nic.to_owned(),
            pool,
            version,
            static_ip: None,
            image: json!({"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-engine-azurestack-ubuntu-2204", "version": "2026.139.1"}),
            data_disks: json!([]),
            custom_data: None,
            node_block: Some(
                json!({"kubeletVersion": format!("v{version}"), "role": "agent", "labels": {"agentpool": pool, "kubernetes.io/role": "agent"}}),
            ),
        }
    }

    pub fn template(&self) -> Value {
        let arm = self.arm;
        let suffix = self.vm.rsplit('-').nth(1).unwrap_or("00000000");
        let custom_data = self.custom_data.clone().or_else(|| {
            self.node_block
                .as_ref()
                .map(aksup::sim::bootstrap::cloud_init_custom_data)
        });
        let mut os_profile = json!({"computerName": &self.vm, "adminUsername": "azureuser",
            "linuxConfiguration": {"disablePasswordAuthentication": true}});
        if let Some(data) = custom_data {
            os_profile["customData"] = json!(data);
        }
        let ip_config = match self.static_ip {
            Some(ip) => json!({"privateIPAllocationMethod": "Static", "privateIPAddress": ip}),
            None => json!({"privateIPAllocationMethod": "Dynamic"}),
        };
        let mut ip_properties = ip_config;
        ip_properties["subnet"] = json!({"id": arm.rg(&format!("providers/Microsoft.Network/virtualNetworks/k8s-vnet-{suffix}/subnets/k8s-subnet"))});
        json!({
            "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "parameters": {},
            "resources": [
                {
                    "type": "Microsoft.Network/networkInterfaces",
                    "apiVersion": NETWORK,
                    "name": &self.nic,
                    "location": arm.location,
                    "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": ip_properties}], "enableIPForwarding": true}
                },
                {
                    "type": "Microsoft.Compute/virtualMachines",
                    "apiVersion": COMPUTE,
                    "name": &self.vm,
                    "location": arm.location,
                    "dependsOn": [arm.rg(&format!("providers/Microsoft.Network/networkInterfaces/{}", self.nic))],
                    "tags": {
                        "orchestrator": format!("Kubernetes:{}", self.version),
                        "poolName": self.pool,
                        "resourceNameSuffix": suffix,
                        "aksEngineVersion": "v0.85.0",
                        "creationSource": format!("aksengine-{}", self.vm),
                    },
                    "properties": {
                        "availabilitySet": {"id": arm.rg(&format!("providers/Microsoft.Compute/availabilitySets/{}-availabilitySet-{suffix}", self.pool))},
                        "hardwareProfile": {"vmSize": "Standard_D2_v2"},
                        "osProfile": os_profile,
                        "storageProfile": {
                            "imageReference": self.image,
                            "osDisk": {"createOption": "FromImage", "caching": "ReadWrite", "diskSizeGB": 100, "managedDisk": {"storageAccountType": "Standard_LRS"}},
                            "dataDisks": self.data_disks,
                        },
                        "networkProfile": {"networkInterfaces": [{"id": arm.rg(&format!("providers/Microsoft.Network/networkInterfaces/{}", self.nic))}]},
                    },
                    "resources": [{
                        "type": "extensions",
                        "apiVersion": COMPUTE,
                        "name": "cse-agent",
                        "location": arm.location,
                        "properties": {"publisher": "Microsoft.Azure.Extensions", "type": "CustomScript", "typeHandlerVersion": "2.0", "autoUpgradeMinorVersion": true, "settings": {}}
                    }]
                }
            ]
        })
    }
}
