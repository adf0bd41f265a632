#!/usr/bin/env python3
"""Writes the generated-style apimodels in testdata/ (run from the repo root).

The files imitate what `aks-engine-azurestack deploy` writes to
_output/<dnsPrefix>/apimodel.json: aks-engine's JSON format (2-space indent, no
HTML escaping, trailing newline), every section aksup reads, and fake
certificates and secrets (no real key material). Re-run after editing; the
round-trip tests require byte-identical output from aksup's serializer.
"""
import copy
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent

FAKE_CERT = "-----BEGIN CERTIFICATE-----\nMIIFAKECERTIFICATEFORAKSUPTESTDATAONLYNOTAREALCERTIFICATE0000{n}\n-----END CERTIFICATE-----\n"
FAKE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIFAKEPRIVATEKEYFORAKSUPTESTDATAONLYSECRET{n}SECRET\n-----END RSA PRIVATE KEY-----\n"


def certificate_profile(masters):
    return {
        "caCertificate": FAKE_CERT.format(n="ca"),
        "caPrivateKey": FAKE_KEY.format(n="ca"),
        "apiServerCertificate": FAKE_CERT.format(n="apiserver"),
        "apiServerPrivateKey": FAKE_KEY.format(n="apiserver"),
        "clientCertificate": FAKE_CERT.format(n="client"),
        "clientPrivateKey": FAKE_KEY.format(n="client"),
        "kubeConfigCertificate": FAKE_CERT.format(n="kubeconfig"),
        "kubeConfigPrivateKey": FAKE_KEY.format(n="kubeconfig"),
        "etcdServerCertificate": FAKE_CERT.format(n="etcdserver"),
        "etcdServerPrivateKey": FAKE_KEY.format(n="etcdserver"),
        "etcdClientCertificate": FAKE_CERT.format(n="etcdclient"),
        "etcdClientPrivateKey": FAKE_KEY.format(n="etcdclient"),
        "etcdPeerCertificates": [FAKE_CERT.format(n=f"etcdpeer{i}") for i in range(masters)],
        "etcdPeerPrivateKeys": [FAKE_KEY.format(n=f"etcdpeer{i}") for i in range(masters)],
    }


def environment(identity="azure_ad"):
    login = "https://adfs.local.azurestack.external/adfs/" if identity == "adfs" else "https://login.microsoftonline.com/"
    audience = (
        "https://management.adfs.azurestack.local/5f1c3a58-9d56-4d9e-9b0e-3c4d2d1e6a77"
        if identity == "adfs"
        else "https://management.contoso.onmicrosoft.com/5f1c3a58-9d56-4d9e-9b0e-3c4d2d1e6a77"
    )
    return {
        "name": "AzureStackCloud",
        "managementPortalURL": "https://portal.local.azurestack.external/",
        "publishSettingsURL": "",
        "serviceManagementEndpoint": audience,
        "resourceManagerEndpoint": "https://management.local.azurestack.external/",
        "activeDirectoryEndpoint": login,
        "galleryEndpoint": "https://providers.local.azurestack.external:30016/",
        "keyVaultEndpoint": "https://vault.local.azurestack.external/",
        "graphEndpoint": "https://graph.windows.net/" if identity == "azure_ad" else "https://graph.local.azurestack.external/",
        "serviceBusEndpoint": "",
        "batchManagementEndpoint": "",
        "storageEndpointSuffix": "local.azurestack.external",
        "sqlDatabaseDNSSuffix": "",
        "trafficManagerDNSSuffix": "",
        "keyVaultDNSSuffix": "vault.local.azurestack.external",
        "serviceBusEndpointSuffix": "",
        "serviceManagementVMDNSSuffix": "cloudapp.net",
        "resourceManagerVMDNSSuffix": "cloudapp.local.azurestack.external",
        "containerRegistryDNSSuffix": "",
        "cosmosDBDNSSuffix": "",
        "tokenAudience": "",
        "resourceIdentifiers": {},
    }


def kubernetes_config(version, runtime="containerd"):
    return {
        "kubernetesImageBase": "mcr.microsoft.com/",
        "mcrKubernetesImageBase": "mcr.microsoft.com/",
        "clusterSubnet": "10.244.0.0/16",
        "networkPolicy": "",
        "networkPlugin": "kubenet",
        "containerRuntime": runtime,
        "maxPods": 30,
        "dockerBridgeSubnet": "172.17.0.1/16",
        "dnsServiceIP": "10.0.0.10",
        "serviceCidr": "10.0.0.0/16",
        "useManagedIdentity": False,
        "useInstanceMetadata": False,
        "enableRbac": True,
        "enableSecureKubelet": True,
        "privateCluster": {"enabled": False, "enableHostsConfigAgent": False},
        "gchighthreshold": 85,
        "gclowthreshold": 80,
        "etcdVersion": "3.5.16",
        "etcdDiskSizeGB": "100",
        "etcdStorageLimitGB": 8,
        "useCloudControllerManager": True,
        "cloudProviderBackoff": True,
        "cloudProviderBackoffRetries": 1,
        "cloudProviderBackoffJitter": 1,
        "cloudProviderBackoffDuration": 30,
        "cloudProviderBackoffExponent": 1.5,
        "cloudProviderRateLimit": True,
        "cloudProviderRateLimitQPS": 100,
        "cloudProviderRateLimitQPSWrite": 25,
        "cloudProviderRateLimitBucket": 150,
        "cloudProviderRateLimitBucketWrite": 30,
        "kubeletConfig": {
            "--address": "0.0.0.0",
            "--cloud-config": "",
            "--cloud-provider": "external",
            "--cluster-dns": "10.0.0.10",
            "--cluster-domain": "cluster.local",
            "--max-pods": "30",
            "--node-status-update-frequency": "1m",
            "--pod-infra-container-image": "mcr.microsoft.com/oss/kubernetes/pause:3.9",
        },
        "controllerManagerConfig": {
            "--cloud-provider": "external",
            "--node-monitor-grace-period": "5m",
            "--route-reconciliation-period": "1m",
        },
        "cloudControllerManagerConfig": {"--cloud-provider": "azure", "--route-reconciliation-period": "1m"},
        "apiServerConfig": {"--anonymous-auth": "false", "--tls-min-version": "VersionTLS12"},
        "schedulerConfig": {"--v": "2"},
        "addons": [
            {"name": "coredns", "enabled": True, "containers": [{"name": "coredns", "image": "mcr.microsoft.com/oss/kubernetes/coredns:v1.11.3"}]},
            {"name": "azure-cloud-provider", "enabled": True},
        ],
        "components": [
            {"name": "kube-apiserver", "enabled": True, "containers": [{"name": "kube-apiserver", "image": f"mcr.microsoft.com/oss/kubernetes/kube-apiserver:v{version}"}]},
            {"name": "cluster-init", "enabled": False},
        ],
    }


def cluster(dns_prefix, version, masters=1, pools=None, identity="azure_ad", auth="client_secret", distro="aks-ubuntu-22.04", runtime="containerd", windows=False, private=False):
    release = ".".join(version.split(".")[:2])
    props = {
        "orchestratorProfile": {
            "orchestratorType": "Kubernetes",
            "orchestratorRelease": release,
            "orchestratorVersion": version,
            "kubernetesConfig": kubernetes_config(version, runtime),
        },
        "masterProfile": {
            "count": masters,
            "dnsPrefix": dns_prefix,
            "subjectAltNames": None,
            "vmSize": "Standard_D2_v2",
            "osDiskSizeGB": 128,
            "vnetCidr": "10.240.0.0/12",
            "firstConsecutiveStaticIP": "10.240.255.5",
            "storageProfile": "ManagedDisks",
            "oauthEnabled": False,
            "preProvisionExtension": None,
            "extensions": [],
            "distro": distro,
            "kubernetesConfig": {"kubeletConfig": {"--max-pods": "30"}},
            "availabilityProfile": "AvailabilitySet",
            "platformFaultDomainCount": 3,
            "platformUpdateDomainCount": 3,
            "cosmosEtcd": False,
            "auditDEnabled": False,
            "fqdn": f"{dns_prefix}.local.cloudapp.local.azurestack.external",
        },
        "agentPoolProfiles": [],
        "linuxProfile": {
            "adminUsername": "azureuser",
            "ssh": {"publicKeys": [{"keyData": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDfakeaksuptestkey azureuser@aksup"}]},
            "enableUnattendedUpgrades": False,
            "runUnattendedUpgradesOnBootstrap": False,
        },
        "servicePrincipalProfile": {
            "clientId": "8a2ab0d0-36d4-4d3f-9a4a-1b3b0e5b7c11",
            "secret": "FAKE-sp-secret-value-for-tests-only",
        },
        "certificateProfile": certificate_profile(masters),
        "featureFlags": {"enableTelemetry": False},
        "customCloudProfile": {
            "environment": environment(identity),
            "identitySystem": identity,
            "authenticationMethod": auth,
            "dependenciesLocation": "public",
            "portalURL": "https://portal.local.azurestack.external/",
        },
    }
    for index, (name, count, os_type, labels) in enumerate(pools or []):
        pool = {
            "name": name,
            "count": count,
            "vmSize": "Standard_D2_v2",
            "osDiskSizeGB": 128,
            "osType": os_type,
            "availabilityProfile": "AvailabilitySet",
            "storageProfile": "ManagedDisks",
            "distro": "" if os_type == "Windows" else distro,
            "kubernetesConfig": {"kubeletConfig": {"--max-pods": "30"}},
            "acceleratedNetworkingEnabled": False,
            "acceleratedNetworkingEnabledWindows": False,
            "preserveNodesProperties": True,
            "fqdn": "",
            "platformFaultDomainCount": 3,
            "platformUpdateDomainCount": 3,
        }
        if labels:
            pool["customNodeLabels"] = labels
        props["agentPoolProfiles"].append(pool)
    if windows:
        props["windowsProfile"] = {
            "adminUsername": "azureuser",
            "adminPassword": "FAKE-windows-Password~1",
            "csiProxyURL": "",
            "enableCSIProxy": True,
            "imageReference": None,
            "imageVersion": "17763.8000.20260101",
            "sshEnabled": True,
            "windowsPublisher": "microsoft-aks",
            "windowsOffer": "aks-windows",
            "windowsSku": "2019-datacenter-core-azurestack-ctrd-2601",
            "enableAutomaticUpdates": False,
        }
    if private:
        props["orchestratorProfile"]["kubernetesConfig"]["privateCluster"] = {
            "enabled": True,
            "enableHostsConfigAgent": False,
            "jumpboxProfile": {
                "name": f"{dns_prefix}-jb",
                "vmSize": "Standard_D2_v2",
                "osDiskSizeGB": 30,
                "username": "azureuser",
                "publicKey": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDfakejumpboxkey azureuser@jumpbox",
                "storageProfile": "ManagedDisks",
            },
        }
    return {"apiVersion": "vlabs", "location": "local", "properties": props}


def write(path, doc):
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    (ROOT / path).write_text(text)


MODELS = {
    "apimodels/single-master-aad.json": cluster("aksup1m", "1.33.10", 1, [("linuxpool", 2, "Linux", {})]),
    "apimodels/three-masters-two-pools.json": cluster(
        "aksup3m", "1.33.10", 3, [("linuxpool", 3, "Linux", {"team": "payments"}), ("batch", 2, "Linux", {"workload": "batch", "tier": "gold"})]
    ),
    "apimodels/windows-pool.json": cluster("aksupwin", "1.33.10", 3, [("linuxpool", 2, "Linux", {}), ("winpool", 2, "Windows", {})], windows=True),
    "apimodels/adfs-certificate.json": cluster("aksupadfs", "1.34.4", 1, [("linuxpool", 2, "Linux", {})], identity="adfs", auth="client_certificate"),
    "apimodels/private-cluster.json": cluster("aksuppriv", "1.33.10", 3, [("linuxpool", 2, "Linux", {})], private=True),
    "apimodels/old-docker.json": cluster("aksupold", "1.23.15", 1, [("linuxpool", 2, "Linux", {})], distro="aks-ubuntu-18.04", runtime="docker"),
}


def invalid():
    base = MODELS["apimodels/single-master-aad.json"]
    out = {}

    def variant(name, mutate):
        doc = copy.deepcopy(base)
        mutate(doc)
        out[f"invalid/{name}.json"] = doc

    variant("api-version", lambda d: d.__setitem__("apiVersion", "2017-07-01"))
    variant("no-orchestrator-version", lambda d: d["properties"]["orchestratorProfile"].pop("orchestratorVersion"))
    variant("no-master-profile", lambda d: d["properties"].pop("masterProfile"))
    variant("master-count", lambda d: d["properties"]["masterProfile"].__setitem__("count", 2))
    variant("pool-count", lambda d: d["properties"]["agentPoolProfiles"][0].__setitem__("count", -1))
    variant("duplicate-pool", lambda d: d["properties"]["agentPoolProfiles"].append(copy.deepcopy(d["properties"]["agentPoolProfiles"][0])))
    variant("vmss-control-plane", lambda d: d["properties"]["masterProfile"].__setitem__("availabilityProfile", "VirtualMachineScaleSets"))
    variant("identity-system", lambda d: d["properties"]["customCloudProfile"].__setitem__("identitySystem", "kerberos"))
    variant("authentication-method", lambda d: d["properties"]["customCloudProfile"].__setitem__("authenticationMethod", "password"))
    return out


if __name__ == "__main__":
    for path, doc in {**MODELS, **invalid()}.items():
        write(path, doc)
    (ROOT / "invalid/syntax.json").write_text('{\n  "apiVersion": "vlabs",\n  "properties": {\n    "masterProfile": {\n      "count": 1,\n    }\n  }\n}\n')
