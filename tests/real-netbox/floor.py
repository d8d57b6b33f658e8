"""The same-body sequential floor of a first sync's VM creates, for bench.sh.

  floor.py prepare PLAN.json     after the sync the plan was made for: reads the VMs it created
                                 back into the bodies it sent (for each create, the fields its
                                 plan lists, references as ids, tags as ids, the cluster), deletes
                                 those VMs and prints the bodies as JSON
  floor.py post BODIES.json N    bulk-POSTs the bodies N per request, one request at a time, and
                                 prints the wall time, the requests and the load average

NETBOX_URL and NETBOX_TOKEN (a v2 token) come from the environment. Stops (exit 1) at the first
request NetBox does not accept: a failed floor means nothing. Standard library only.
"""

import json
import os
import sys
import time
import urllib.request

URL = os.environ["NETBOX_URL"].rstrip("/")
TOKEN = os.environ["NETBOX_TOKEN"]
VMS = "/api/virtualization/virtual-machines/"
# Identity custom field (host reconcile::VM_ID_FIELD).
VM_ID_FIELD = "proxmox_vm_id"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        URL + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        text = r.read()
        return json.loads(text) if text else None


def all_vms():
    out, path = [], VMS + "?limit=1000"
    while path:
        page = call("GET", path)
        out.extend(page["results"])
        path = page["next"] and page["next"][len(URL):]
    return out


def sent(value):
    """A stored value as it was written: references and choices as their id or value."""
    if isinstance(value, dict):
        if "id" in value:
            return value["id"]
        if "value" in value:
            return value["value"]
    if isinstance(value, list):
        return [sent(v) for v in value]
    return value


def prepare(plan_path):
    plan = json.load(open(plan_path))
    creates = [o for o in plan["operations"] if o["op"] == "create"]
    by_identity = {
        (vm["cluster"]["name"], vm["custom_fields"].get(VM_ID_FIELD)): vm for vm in all_vms()
    }
    bodies = []
    for op in creates:
        vm = by_identity.get((op["cluster"], op["vmid"]))
        if vm is None:
            sys.exit(f"floor.py: no NetBox VM for {op['scope']}: the sync did not create it")
        body, custom = {"cluster": vm["cluster"]["id"]}, {}
        for change in op["changes"]:
            field = change["field"]
            if field.startswith("custom_fields."):
                name = field.split(".", 1)[1]
                custom[name] = vm["custom_fields"].get(name)
            else:
                body[field] = sent(vm.get(field))
        if custom:
            body["custom_fields"] = custom
        bodies.append(body)
    ids = [vm["id"] for vm in by_identity.values()]
    for i in range(0, len(ids), 100):
        call("DELETE", VMS, [{"id": id_} for id_ in ids[i : i + 100]])
    json.dump(bodies, sys.stdout)


def post(bodies_path, per_request):
    bodies = json.load(open(bodies_path))
    load = open("/proc/loadavg").read().split()[:3]
    t0 = time.monotonic()
    requests = 0
    for i in range(0, len(bodies), per_request):
        call("POST", VMS, bodies[i : i + per_request])
        requests += 1
    wall = time.monotonic() - t0
    json.dump(
        {"wall_s": round(wall, 2), "vms": len(bodies), "requests": requests, "load": load},
        sys.stdout,
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "post":
        post(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
