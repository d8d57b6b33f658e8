//! The NetBox simulator against the literal bodies of netbox-live.md 2.2-2.4 and reference part B.

mod common;

use common::{Nb, start, start_cfg};
use pve2netbox_testkit::{InventorySpec, SimConfig};
use reqwest::Method;
use serde_json::{Value, json};

fn vm(name: &str, cluster: u64, vmid: u64) -> Value {
    json!({"name": name, "cluster": cluster, "status": "active", "vcpus": 2, "memory": 2048, "disk": 32768,
           "custom_fields": {"proxmox_vm_id": vmid}})
}

#[tokio::test]
async fn auth_failures_are_403_with_netbox_details() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let url = format!("{}/api/virtualization/virtual-machines/", nb.url);
    let c = &nb.client;
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Authentication credentials were not provided."})
    );
    let r = c
        .get(&url)
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "Authentication credentials were not provided."})
    );
    let r = c
        .get(&url)
        .header(
            "Authorization",
            "Bearer nbt_AAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.json::<Value>().await.unwrap()),
        (403, json!({"detail": "Invalid v2 token"}))
    );
    let r = c
        .get(&url)
        .header("Authorization", format!("Token {}", "x".repeat(40)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.json::<Value>().await.unwrap()),
        (403, json!({"detail": "Invalid v1 token"}))
    );
    // The version comes from the nbt_ prefix, not the keyword.
    for h in [
        format!("Token {}", sim.netbox_token()),
        format!("Bearer {}", sim.netbox_token_v1()),
        format!("token {}", sim.netbox_token_v1()),
    ] {
        let r = c.get(&url).header("Authorization", h).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["api-version"], "4.7");
        assert_eq!(r.headers()["x-request-id"].to_str().unwrap().len(), 36);
    }
    // Read-only token: reads work, writes are 403.
    let ro = format!("Bearer {}", sim.netbox_token_readonly());
    assert_eq!(
        c.get(&url)
            .header("Authorization", &ro)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = c
        .post(format!("{}/api/extras/tags/", nb.url))
        .header("Authorization", &ro)
        .json(&json!({"name": "a", "slug": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"detail": "You do not have permission to perform this action."})
    );
}

#[tokio::test]
async fn status_errors_and_unknown_urls() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (s, v) = nb.get("/api/status/").await;
    assert_eq!(s, 200);
    assert_eq!(v["netbox-version"], "4.7.3");
    let (s, v) = nb.send(Method::PUT, "/api/status/", Some(json!({}))).await;
    assert_eq!(
        (s, v),
        (405, json!({"detail": "Method \"PUT\" not allowed."}))
    );
    let (s, v) = nb.get("/api/virtualization/virtual-machines/999999/").await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"detail": "No VirtualMachine matches the given query."})
        )
    );
    let r = nb
        .req(Method::GET, "/api/virtualization/nope/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let r = nb
        .req(Method::POST, "/api/dcim/sites/")
        .header("content-type", "application/json")
        .body("{\"name\": }")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error - Expecting value: line 1 column 10"),
        "{v}"
    );
    // Body over 2.5 MB: NetBox's 500.
    let big = json!([{"name": "x".repeat(2_700_000)}]);
    let (s, v) = nb.post("/api/dcim/sites/", big).await;
    assert_eq!(s, 500);
    assert_eq!(
        v,
        json!({"error": "Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.", "exception": "RequestDataTooBig",
                         "netbox_version": "4.7.3", "python_version": "3.13.5"})
    );
}

#[tokio::test]
async fn vm_reads_writes_and_literal_validation() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (site, cluster, role) = nb.preflight().await;
    let (s, a) = nb
        .post(
            "/api/virtualization/virtual-machines/",
            vm("vm-00100-db", cluster, 100),
        )
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["status"], json!({"value": "active", "label": "Active"}));
    assert_eq!(a["vcpus"], json!(2.0));
    assert!(a["vcpus"].is_f64());
    assert_eq!(a["cluster"]["id"], cluster);
    assert_eq!(a["cluster"]["name"], "pve-cl1");
    assert_eq!(a["site"]["id"], site, "a VM inherits its cluster's site");
    assert_eq!(
        a["custom_fields"],
        json!({"proxmox_node": null, "proxmox_vm_id": 100, "proxmox_vm_type": null})
    );
    assert_eq!(a["virtual_machine_type"], Value::Null);
    assert_eq!(a["start_on_boot"], json!({"value": "off", "label": "Off"}));
    assert_eq!(a["config_context"], json!({}));
    let id = a["id"].as_u64().unwrap();

    // Case-insensitive uniqueness per cluster and tenant.
    let (s, v) = nb
        .post(
            "/api/virtualization/virtual-machines/",
            vm("VM-00100-DB", cluster, 101),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"__all__": ["Virtual machine name must be unique per cluster and tenant."]})
        )
    );
    let (s, v) = nb
        .post(
            "/api/virtualization/virtual-machines/",
            json!({"name": "x", "cluster": cluster, "custom_fields": {"proxmox_vm_id": "abc"}}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"__all__": ["Invalid value for custom field 'proxmox_vm_id': Value must be an integer."]})
        )
    );
    let (s, v) = nb
        .post(
            "/api/virtualization/virtual-machines/",
            json!({"name": "x", "cluster": cluster, "custom_fields": {"nope": 1}}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"custom_fields": {"nope": "Custom field 'nope' does not exist for this object type."}})
        )
    );
    let (s, v) = nb
        .post(
            "/api/virtualization/virtual-machines/",
            json!({"name": "x", "status": "running", "cluster": 9999}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"status": ["running is not a valid choice."], "cluster": ["Related object not found using the provided numeric ID: 9999"]})
        )
    );
    let (s, v) = nb
        .post(
            "/api/virtualization/virtual-machines/",
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"__all__": ["A virtual machine must be assigned to a site, cluster, or device."]})
        )
    );
    let (s, v) = nb
        .post(
            "/api/virtualization/virtual-machines/",
            json!({"name": "x", "cluster": cluster, "tags": [{"name": "prod"}]}),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"tags": ["Related object not found using the provided attributes: {'name': 'prod'}"]})
        )
    );
    // PUT replaces the object: without cluster (or site/device) nothing places it.
    let (s, v) = nb
        .send(
            Method::PUT,
            &format!("/api/virtualization/virtual-machines/{id}/"),
            Some(json!({"name": "vm-00100-db"})),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"__all__": ["A virtual machine must be assigned to a site, cluster, or device."]})
        )
    );

    // PATCH merges custom fields, replaces tags, and bumps last_updated even when nothing changes.
    let path = format!("/api/virtualization/virtual-machines/{id}/");
    let (s, b) = nb.patch(&path, json!({"cluster": cluster, "role": {"slug": "vm"}, "custom_fields": {"proxmox_node": "pve1"}, "tags": [{"slug": "pve2netbox"}]})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["custom_fields"]["proxmox_vm_id"], 100);
    assert_eq!(b["custom_fields"]["proxmox_node"], "pve1");
    assert_eq!(b["role"]["id"], role);
    assert_eq!(b["tags"][0]["slug"], "pve2netbox");
    let (_, c) = nb.patch(&path, json!({})).await;
    assert!(
        c["last_updated"].as_str().unwrap() > b["last_updated"].as_str().unwrap(),
        "no-op PATCH bumps last_updated"
    );
    let (_, d) = nb.patch(&path, json!({"tags": []})).await;
    assert_eq!(d["tags"], json!([]));

    // Virtual disks: disk must equal their sum.
    let (s, _) = nb
        .post(
            "/api/virtualization/virtual-disks/",
            json!({"virtual_machine": id, "name": "scsi0", "size": 1000}),
        )
        .await;
    assert_eq!(s, 201);
    let (_, v) = nb.get(&path).await;
    assert_eq!(v["disk"], 1000);
    assert_eq!(v["virtual_disk_count"], 1);
    let (s, v) = nb.patch(&path, json!({"disk": 5})).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"disk": ["The specified disk size (5) must match the aggregate size of assigned virtual disks (1000)."]})
        )
    );

    // Deleting a cluster with VMs is protected.
    let (s, v) = nb
        .delete(&format!("/api/virtualization/clusters/{cluster}/"), None)
        .await;
    assert_eq!(s, 409);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("Unable to delete object. 1 dependent objects were found")
    );
    // Deleting the VM cascades to its disks.
    let (s, _) = nb.delete(&path, None).await;
    assert_eq!(s, 204);
    assert!(
        sim.control()
            .netbox_objects("virtual-disks")
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn pagination_trimming_filters_and_ordering() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vms: Vec<Value> = (0..1200)
        .map(|i| vm(&format!("vm-{i}"), cluster, 100 + i))
        .collect();
    let (s, created) = nb
        .post("/api/virtualization/virtual-machines/", Value::Array(vms))
        .await;
    assert_eq!(s, 201);
    assert_eq!(created.as_array().unwrap().len(), 1200);
    assert_eq!(
        created[0]["name"], "vm-0",
        "created objects return in request order"
    );

    let (_, v) = nb
        .get("/api/virtualization/virtual-machines/?limit=5000")
        .await;
    assert_eq!(v["count"], 1200);
    assert_eq!(v["results"].as_array().unwrap().len(), 1000);
    assert!(v["next"].as_str().unwrap().contains("offset=1000"));
    assert_eq!(v["previous"], Value::Null);
    let (_, v0) = nb
        .get("/api/virtualization/virtual-machines/?limit=0")
        .await;
    assert_eq!(v0["results"].as_array().unwrap().len(), 1000);
    let (_, d) = nb.get("/api/virtualization/virtual-machines/").await;
    assert_eq!(d["results"].as_array().unwrap().len(), 50);
    // Default order is natural by name.
    assert_eq!(d["results"][0]["name"], "vm-0");
    assert_eq!(d["results"][2]["name"], "vm-2");
    let next = v["next"]
        .as_str()
        .unwrap()
        .trim_start_matches(&nb.url)
        .to_string();
    let (_, p2) = nb.get(&next).await;
    assert_eq!(p2["results"].as_array().unwrap().len(), 200);
    assert_eq!(p2["next"], Value::Null);
    assert!(p2["previous"].is_string());

    let (_, f) = nb.get("/api/virtualization/virtual-machines/?limit=2&fields=id,name,custom_fields,cluster&ordering=-id").await;
    let r0 = f["results"][0].as_object().unwrap();
    assert_eq!(
        r0.keys().collect::<Vec<_>>(),
        ["cluster", "custom_fields", "id", "name"]
    );
    assert_eq!(r0["id"], created[1199]["id"]);
    assert_eq!(
        r0["cluster"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["description", "display", "id", "name", "url"]
    );
    let (_, b) = nb
        .get("/api/virtualization/virtual-machines/?limit=1&brief=1")
        .await;
    assert_eq!(
        b["results"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["description", "display", "id", "name", "url"]
    );
    let (_, o) = nb
        .get("/api/virtualization/virtual-machines/?limit=1&omit=config_context,comments")
        .await;
    assert!(
        o["results"][0].get("config_context").is_none() && o["results"][0].get("name").is_some()
    );

    // Filters.
    let (_, v) = nb
        .get("/api/virtualization/virtual-machines/?cf_proxmox_vm_id=100&cf_proxmox_vm_id=101")
        .await;
    assert_eq!(v["count"], 2, "repeated cf = OR");
    let (_, v) = nb
        .get("/api/virtualization/virtual-machines/?name=VM-7")
        .await;
    assert_eq!(v["count"], 1, "name is case-insensitive");
    let (_, v) = nb
        .get("/api/virtualization/virtual-machines/?cf_proxmox_vmid=100&bogus=1")
        .await;
    assert_eq!(v["count"], 1200, "unknown parameters are ignored");
    let (s, v) = nb
        .get("/api/virtualization/virtual-machines/?cf_proxmox_vm_id=abc")
        .await;
    assert_eq!(
        (s, v),
        (400, json!({"cf_proxmox_vm_id": ["Enter a whole number."]}))
    );
    let first = created[0]["id"].as_u64().unwrap();
    let (_, v) = nb
        .get(&format!(
            "/api/virtualization/virtual-machines/?id__gt={}&ordering=id&limit=1000",
            first + 1099
        ))
        .await;
    assert_eq!(v["count"], 100);
    let (_, v) = nb
        .get(&format!(
            "/api/virtualization/virtual-machines/?cluster_id={cluster}&q=vm-119"
        ))
        .await;
    assert_eq!(v["count"], 11, "q searches name with icontains");
    nb.patch(
        &format!("/api/virtualization/virtual-machines/{first}/"),
        json!({"tags": [{"slug": "pve2netbox"}]}),
    )
    .await;
    let (_, v) = nb
        .get("/api/virtualization/virtual-machines/?tag=pve2netbox")
        .await;
    assert_eq!(v["count"], 1);
    let (s, _) = nb
        .get("/api/virtualization/virtual-machines/?tag=nope")
        .await;
    assert_eq!(s, 400);
    // Text custom fields filter loosely (icontains).
    nb.patch(
        &format!("/api/virtualization/virtual-machines/{first}/"),
        json!({"custom_fields": {"proxmox_node": "pve12"}}),
    )
    .await;
    let (_, v) = nb
        .get("/api/virtualization/virtual-machines/?cf_proxmox_node=pve1")
        .await;
    assert_eq!(v["count"], 1);
}

#[tokio::test]
async fn bulk_writes_are_atomic_with_47_shapes() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let path = "/api/virtualization/virtual-machines/";
    let (s, v) = nb
        .post(
            path,
            json!([
                vm("a", cluster, 1),
                vm("A", cluster, 2),
                vm("b", cluster, 3)
            ]),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"detail": "1 of 3 objects could not be created.",
        "errors": [{"index": 1, "errors": {"__all__": ["Virtual machine name must be unique per cluster and tenant."]}}]})
        )
    );
    assert!(
        sim.control()
            .netbox_objects("virtual-machines")
            .unwrap()
            .is_empty(),
        "atomic: nothing created"
    );
    let (_, created) = nb
        .post(path, json!([vm("a", cluster, 1), vm("b", cluster, 2)]))
        .await;
    let (ida, idb) = (
        created[0]["id"].as_u64().unwrap(),
        created[1]["id"].as_u64().unwrap(),
    );
    let (s, v) = nb
        .patch(
            path,
            json!([{"id": ida, "vcpus": 4}, {"id": 999999, "vcpus": 4}]),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"detail": "1 of 2 objects could not be found.",
        "errors": [{"id": 999999, "errors": {"id": ["Object with ID 999999 does not exist"]}}]})
        )
    );
    let (s, v) = nb.patch(path, json!([{"vcpus": 4}])).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"detail": "1 of 1 objects failed validation.",
        "errors": [{"index": 0, "errors": {"id": ["This field is required."]}}]})
        )
    );
    let (s, v) = nb.patch(path, json!({"id": ida})).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"detail": "Expected a list of objects, but got dict."})
        )
    );
    let (s, v) = nb
        .send(
            Method::PATCH,
            &format!("{path}?fields=id,vcpus"),
            Some(json!([{"id": ida, "vcpus": 1.5}, {"id": idb, "vcpus": 3}])),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            200,
            json!([{"id": ida, "vcpus": 1.5}, {"id": idb, "vcpus": 3.0}])
        )
    );
    let before = sim.control().counters();
    let (s, _) = nb
        .delete(path, Some(json!([{"id": ida}, {"id": idb}])))
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        sim.control().counters().netbox("DELETE") - before.netbox("DELETE"),
        1,
        "a bulk request counts once"
    );
    assert!(
        sim.control()
            .netbox_objects("virtual-machines")
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn journal_entries_and_object_changes() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let (_, a) = nb
        .post("/api/virtualization/virtual-machines/", vm("a", cluster, 1))
        .await;
    let id = a["id"].as_u64().unwrap();
    let upid = "UPID:pve1:0001A2B3:0C4D5E6F:66B2A1C0:qmstart:100:root@pam:";
    let (s, j) = nb.post("/api/extras/journal-entries/", json!({"assigned_object_type": "virtualization.virtualmachine",
        "assigned_object_id": id, "kind": "success", "comments": format!("qmstart OK {upid}"), "created": "2001-01-01T00:00:00Z"})).await;
    assert_eq!(s, 201, "{j}");
    assert_eq!(j["kind"], json!({"value": "success", "label": "Success"}));
    assert!(
        j["created"].as_str().unwrap().starts_with("20")
            && !j["created"].as_str().unwrap().starts_with("2001"),
        "created is automatic"
    );
    assert_eq!(j["assigned_object"]["id"], id);
    let (s, v) = nb.post("/api/extras/journal-entries/", json!({"assigned_object_type": "virtualization.virtualmachine", "assigned_object_id": 999, "comments": "x"})).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"__all__": ["Invalid assigned_object: virtualization.virtualmachine ID 999"]})
        )
    );
    let (_, v) = nb.get(&format!("/api/extras/journal-entries/?assigned_object_type=virtualization.virtualmachine&assigned_object_id={id}&q=0C4D5E6F")).await;
    assert_eq!(v["count"], 1);
    let (_, v) = nb
        .get("/api/extras/journal-entries/?q=nothing-like-this")
        .await;
    assert_eq!(v["count"], 0);
    // Change log: the VM creation is recorded with the request id.
    let r = nb
        .req(
            Method::PATCH,
            &format!("/api/virtualization/virtual-machines/{id}/"),
        )
        .json(&json!({"comments": "x"}))
        .send()
        .await
        .unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let (_, v) = nb
        .get(&format!("/api/core/object-changes/?request_id={rid}"))
        .await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["results"][0]["action"]["value"], "update");
    // Deleting the VM deletes its journal.
    nb.delete(&format!("/api/virtualization/virtual-machines/{id}/"), None)
        .await;
    assert!(
        sim.control()
            .netbox_objects("journal-entries")
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn version_switches_42_to_46() {
    let sim = start_cfg(SimConfig {
        inventory: InventorySpec {
            vms: 1,
            nodes: 1,
            clusters: 1,
            standalone: 0,
            seed: 1,
        },
        netbox_version: "4.4".parse().unwrap(),
        ..SimConfig::default()
    })
    .await;
    assert!(
        !sim.netbox_token().starts_with("nbt_"),
        "no v2 tokens before 4.5"
    );
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let (s, a) = nb
        .post("/api/virtualization/virtual-machines/", vm("a", cluster, 1))
        .await;
    assert_eq!(s, 201);
    assert!(a.get("virtual_machine_type").is_none() && a.get("start_on_boot").is_none());
    let (_, c) = nb
        .get(&format!("/api/virtualization/clusters/{cluster}/"))
        .await;
    assert_eq!(c["scope_type"], "dcim.site");
    assert!(c["scope"]["id"].is_u64());
    let r = nb
        .req(Method::GET, "/api/virtualization/virtual-machine-types/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "virtual-machine-types appear in 4.6");
    // <= 4.6 bulk POST: bare list of per-item errors.
    let (s, v) = nb
        .post(
            "/api/virtualization/virtual-machines/",
            json!([vm("b", cluster, 2), vm("A", cluster, 3)]),
        )
        .await;
    assert_eq!(
        (s, v),
        (
            400,
            json!([{}, {"__all__": ["Virtual machine name must be unique per cluster and tenant."]}])
        )
    );
    // <= 4.6 bulk PATCH silently skips unknown ids.
    let id = a["id"].as_u64().unwrap();
    let (s, v) = nb
        .patch(
            "/api/virtualization/virtual-machines/",
            json!([{"id": id, "vcpus": 3}, {"id": 424242, "vcpus": 3}]),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
}

/// Found against the real NetBox 4.7.3: `fields=` builds the write serializer too, so body keys
/// it does not list are dropped (a POST misses its required fields, a PATCH changes nothing).
#[tokio::test]
async fn fields_on_writes_drop_unlisted_body_keys() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let path = "/api/virtualization/virtual-machines/";

    let (s, v) = nb
        .post(&format!("{path}?fields=id"), vm("web", cluster, 100))
        .await;
    assert_eq!(s, 400, "the name was dropped: {v}");
    assert!(v.get("name").is_some(), "{v}");

    let (s, v) = nb
        .post(
            &format!("{path}?fields=id,name,cluster"),
            vm("web", cluster, 100),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{v}");
    let id = v["id"].as_u64().unwrap();
    let (_, full) = nb.get(&format!("{path}{id}/")).await;
    assert_eq!(
        full["memory"],
        Value::Null,
        "memory was not listed, so not written"
    );

    let (s, _) = nb
        .patch(&format!("{path}{id}/?fields=id"), json!({"memory": 4096}))
        .await;
    assert_eq!(s, 200);
    let (_, full) = nb.get(&format!("{path}{id}/")).await;
    assert_eq!(
        full["memory"],
        Value::Null,
        "an unlisted key changes nothing"
    );

    let (s, _) = nb
        .patch(
            &format!("{path}{id}/?fields=id,memory"),
            json!({"memory": 4096}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, full) = nb.get(&format!("{path}{id}/")).await;
    assert_eq!(full["memory"], 4096);
}

/// The changes of one object, oldest first.
async fn changes_of(nb: &Nb, id: u64) -> Vec<Value> {
    let (_, v) = nb
        .get(&format!(
            "/api/core/object-changes/?changed_object_type=virtualization.virtualmachine&changed_object_id={id}&ordering=id"
        ))
        .await;
    v["results"].as_array().unwrap().clone()
}

/// Keys whose values differ between two JSON objects.
fn differing_keys(a: &Value, b: &Value) -> Vec<String> {
    let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[tokio::test]
async fn object_changes_carry_snapshots_request_ids_and_messages() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;

    // Create: no state before ({} as the API's "clean" data), the full object after.
    let r = nb
        .req(Method::POST, "/api/virtualization/virtual-machines/")
        .json(&vm("snap", cluster, 100))
        .send()
        .await
        .unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let id = r.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let ch = changes_of(&nb, id).await;
    assert_eq!(ch.len(), 1);
    let c = &ch[0];
    assert_eq!(c["action"], json!({"value": "create", "label": "Created"}));
    assert_eq!(c["changed_object_type"], "virtualization.virtualmachine");
    assert_eq!(c["changed_object_id"], id);
    assert_eq!(c["changed_object"]["id"], id);
    assert_eq!(c["user_name"], "admin");
    assert_eq!(c["request_id"], rid.as_str());
    assert_eq!(c["object_repr"], "snap");
    assert_eq!(c["message"], "");
    assert!(c["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["prechange_data"], json!({}));
    let post = &c["postchange_data"];
    assert_eq!(post["name"], "snap");
    assert_eq!(post["cluster"], cluster, "foreign keys as ids");
    assert_eq!(post["status"], "active", "choices as raw values");
    assert_eq!(post["vcpus"], "2.00", "decimals as strings");
    assert_eq!(post["memory"], 2048);
    assert_eq!(post["custom_fields"]["proxmox_vm_id"], 100);
    assert_eq!(post["tags"], json!([]));
    assert!(
        post.get("created").is_none() && post.get("last_updated").is_none(),
        "created/last_updated are left out: {post}"
    );

    // Update: pre and post differ exactly in what changed.
    let (s, _) = nb
        .patch(
            &format!("/api/virtualization/virtual-machines/{id}/"),
            json!({"memory": 4096}),
        )
        .await;
    assert_eq!(s, 200);
    let ch = changes_of(&nb, id).await;
    assert_eq!(ch.len(), 2);
    let u = &ch[1];
    assert_eq!(u["action"]["value"], "update");
    assert_eq!(u["prechange_data"], ch[0]["postchange_data"]);
    assert_eq!(
        differing_keys(&u["prechange_data"], &u["postchange_data"]),
        ["memory"]
    );
    assert_eq!(u["postchange_data"]["memory"], 4096);

    // A PATCH that changes nothing bumps last_updated but writes no change record.
    let (_, before) = nb
        .get(&format!("/api/virtualization/virtual-machines/{id}/"))
        .await;
    let (_, after) = nb
        .patch(
            &format!("/api/virtualization/virtual-machines/{id}/"),
            json!({"memory": 4096}),
        )
        .await;
    assert_ne!(before["last_updated"], after["last_updated"]);
    assert_eq!(changes_of(&nb, id).await.len(), 2);

    // A bulk request: one request id for all its changes.
    let r = nb
        .req(Method::POST, "/api/virtualization/virtual-machines/")
        .json(&json!([
            vm("b1", cluster, 201),
            vm("b2", cluster, 202),
            vm("b3", cluster, 203)
        ]))
        .send()
        .await
        .unwrap();
    let bulk_rid = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(bulk_rid, rid);
    let (_, v) = nb
        .get(&format!("/api/core/object-changes/?request_id={bulk_rid}"))
        .await;
    assert_eq!(v["count"], 3);
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["request_id"] == bulk_rid.as_str() && c["action"]["value"] == "create")
    );

    // Delete: the state before, {} after, and the request's changelog message.
    let (s, _) = nb
        .delete(
            &format!("/api/virtualization/virtual-machines/{id}/"),
            Some(json!({"changelog_message": "gone from Proxmox"})),
        )
        .await;
    assert_eq!(s, 204);
    let ch = changes_of(&nb, id).await;
    let d = ch.last().unwrap();
    assert_eq!(d["action"]["value"], "delete");
    assert_eq!(d["postchange_data"], json!({}));
    assert_eq!(d["prechange_data"]["memory"], 4096);
    assert_eq!(d["message"], "gone from Proxmox");
    assert_eq!(d["changed_object"], Value::Null);
}

#[tokio::test]
async fn offset_pages_follow_every_write() {
    let sim = start(1, 1, 1).await;
    let nb = Nb::new(&sim);
    let (_, cluster, _) = nb.preflight().await;
    let vms: Vec<Value> = (0..30)
        .map(|i| vm(&format!("vm-{i:02}"), cluster, 100 + i))
        .collect();
    nb.post("/api/virtualization/virtual-machines/", Value::Array(vms))
        .await;
    let page = |offset: usize| {
        let nb = &nb;
        async move {
            nb.get(&format!(
                "/api/virtualization/virtual-machines/?cluster_id={cluster}&fields=id,name&limit=10&offset={offset}"
            ))
            .await
            .1
        }
    };
    let names = |v: &Value| -> Vec<String> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (p0, p2) = (page(0).await, page(20).await);
    assert_eq!(p0["count"], 30);
    assert_eq!(names(&p0)[0], "vm-00");
    assert_eq!(names(&p2)[9], "vm-29");
    assert_eq!(p2["next"], Value::Null);
    // A create, a rename and a delete each show on the next page read of the same listing.
    nb.post(
        "/api/virtualization/virtual-machines/",
        vm("a-first", cluster, 999),
    )
    .await;
    let p0 = page(0).await;
    assert_eq!(p0["count"], 31);
    assert_eq!(names(&p0)[0], "a-first");
    let id29 = p2["results"][9]["id"].as_u64().unwrap();
    nb.patch(
        &format!("/api/virtualization/virtual-machines/{id29}/"),
        json!({"name": "a-second"}),
    )
    .await;
    assert_eq!(names(&page(0).await)[..2], ["a-first", "a-second"]);
    nb.delete(
        &format!("/api/virtualization/virtual-machines/{id29}/"),
        None,
    )
    .await;
    let (p0, p3) = (page(0).await, page(20).await);
    assert_eq!(p0["count"], 30);
    assert_eq!(names(&p0)[1], "vm-00");
    assert_eq!(names(&p3).last().unwrap(), "vm-28");
    // The page window itself is not part of the cached listing.
    let (_, v) = nb
        .get(&format!(
            "/api/virtualization/virtual-machines/?cluster_id={cluster}&fields=id,name&limit=7&offset=28"
        ))
        .await;
    assert_eq!(names(&v), ["vm-27", "vm-28"]);
    assert!(v["previous"].as_str().unwrap().contains("offset=21"));
}
