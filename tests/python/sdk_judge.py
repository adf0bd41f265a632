"""The official Azure SDK for Python as a judge of the simulator's ARM side.

Authenticates with azure-identity's ClientSecretCredential against the
simulator's AAD v2 token endpoint (tenant discovery at
{authority}/{tenant}/v2.0/.well-known/openid-configuration), then uses
azure-mgmt-compute at api-version 2020-06-01 to list VMs (following nextLink),
read one with its instance view, read a marketplace image, and delete a VM
through the SDK's long-running-operation poller. Trusts the simulator's CA
through REQUESTS_CA_BUNDLE (set by the caller). Prints one JSON object.

Usage: sdk_judge.py <simulator.json>   (the Endpoints document of the simulator)
"""

import json
import sys

from azure.identity import ClientSecretCredential
from azure.mgmt.compute import ComputeManagementClient


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        endpoints = json.load(handle)
    arm_url = endpoints["armUrl"]
    authority = arm_url.rstrip("/")
    credential = ClientSecretCredential(
        tenant_id=endpoints["aad"]["tenantId"],
        client_id=endpoints["clientId"],
        client_secret=endpoints["clientSecret"],
        authority=authority,
        disable_instance_discovery=True,
    )
    client = ComputeManagementClient(
        credential,
        endpoints["subscriptionId"],
        base_url=arm_url,
        api_version="2020-06-01",
        credential_scopes=[endpoints["audience"] + "/.default"],
    )
    group = endpoints["resourceGroup"]
    vms = list(client.virtual_machines.list(group))
    names = sorted(vm.name for vm in vms)
    first = client.virtual_machines.get(group, names[0], expand="instanceView")
    statuses = [status.code for status in first.instance_view.statuses]
    reference = first.storage_profile.image_reference
    image = client.virtual_machine_images.get(
        endpoints["location"], reference.publisher, reference.offer, reference.sku, reference.version
    )
    victim = [name for name in names if "-master-" not in name][-1]
    client.virtual_machines.begin_delete(group, victim, polling_interval=0.05).result()
    remaining = sorted(vm.name for vm in client.virtual_machines.list(group))
    print(
        json.dumps(
            {
                "names": names,
                "tags": first.tags,
                "vmSize": first.hardware_profile.vm_size,
                "statuses": statuses,
                "dataDisks": [disk.name for disk in first.storage_profile.data_disks],
                "image": image.name,
                "deleted": victim,
                "remaining": remaining,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
