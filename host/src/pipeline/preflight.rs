//! Preflight: makes sure the objects every VM write relies on exist in NetBox, and reads, once
//! each, the objects the rules may reference (the `known` list of the rules' `Context`).
//!
//! Ensured (created only when missing, never rewritten: an operator's edits of these objects
//! stay): the custom fields on virtual machines (`proxmox_vm_id` integer, `proxmox_vm_type`,
//! `proxmox_node`, `proxmox_tags` text, and `proxmox_missing_runs` integer under the `delete`
//! orphan policy), with task history the cluster custom field `proxmox_tasks_since` (integer
//! epoch seconds: task history's watermark, read here with the clusters), the managed tag `pve2netbox` (and `pve2netbox-orphan` when orphans are
//! marked), the cluster type `proxmox-ve`, one cluster per Proxmox cluster (by name; a
//! standalone node's cluster is named after the node), and, only when a site is configured,
//! the site, manufacturer "Proxmox", device type "Proxmox Generic Device", device role
//! "Proxmox Node" and one device per node. Without a site no device is made (a site is never
//! invented) and the VMs' `device` is left alone.
//!
//! In a preview (`--dry-run`, `plan`) nothing is created: each missing object becomes a
//! pending [`ObjectSpec`] the plan lists, and missing clusters get placeholder ids.
//!
//! Cost: one request per object family, whatever the number of objects: the families the rules
//! may reference (tags, sites, roles, platforms, tenants, VM types) are listed whole; custom
//! fields and clusters are read with their names repeated in one filter (NetBox ORs repeated
//! values); cluster types, manufacturers and device types only when something must be created.
//! A rerun with nothing missing costs the status read plus 8 lists (9 with a site).
//!
//! Edges: NetBox client in; the cluster ids, the rules' known objects and the pending objects
//! out. [`object_endpoint`] and [`object_body`] are shared with dispatch, which creates the
//! objects the rules list in `needs`.

use std::collections::{BTreeMap, BTreeSet};

use guest_default::model::{JsonText, KnownObject, ObjectSpec};
use serde_json::{Map, Value, json};

use crate::clients::netbox::{Capabilities, MIN_SUPPORTED, NetboxClient, NetboxError, Object};
use crate::config::OrphanPolicy;
use crate::pipeline::reconcile::{
    MISSING_RUNS_FIELD, NODE_FIELD, ORPHAN_TAG, VM_ID_FIELD, VM_TYPE_FIELD,
};
use crate::safety::lease::{LeaseError, NetboxLease};

/// The tag marking VMs (and task-history journal entries) the tool manages.
pub const MANAGED_TAG: &str = "pve2netbox";
/// Custom field with the `;`-joined tag slugs the sync applied from Proxmox last time.
pub const TAGS_FIELD: &str = "proxmox_tags";
/// The NetBox object type of virtual machines (custom fields, journal entries).
pub const VM_OBJECT_TYPE: &str = "virtualization.virtualmachine";
/// Cluster custom field holding task history's watermark: epoch seconds before which every
/// task of a managed VM is recorded (see `task_history`).
pub const TASKS_SINCE_FIELD: &str = "proxmox_tasks_since";
/// The NetBox object type of clusters.
pub const CLUSTER_OBJECT_TYPE: &str = "virtualization.cluster";
/// Slug of the cluster type of every cluster the tool creates.
pub const CLUSTER_TYPE_SLUG: &str = "proxmox-ve";
const CLUSTER_TYPE_NAME: &str = "Proxmox VE";
const MANUFACTURER: (&str, &str) = ("Proxmox", "proxmox");
const DEVICE_TYPE: (&str, &str) = ("Proxmox Generic Device", "proxmox-generic-device");
const NODE_ROLE: (&str, &str) = ("Proxmox Node", "proxmox-node");
/// Placeholder ids of clusters a preview would create start here (far above real ids), so
/// identities of different missing clusters never collide in the plan.
pub const PLACEHOLDER_ID_BASE: u64 = 1 << 52;
/// Default colour of created tags and roles (NetBox's grey).
const DEFAULT_COLOR: &str = "9e9e9e";

/// Phase name in errors.
pub const PHASE: &str = "preflight";

/// A preflight that cannot go on: the run stops (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("preflight: {what}: {source}")]
    Netbox {
        what: String,
        #[source]
        source: NetboxError,
    },
    #[error(
        "preflight: custom field '{name}' exists with type '{found}' but pve2netbox needs \
         '{wanted}' on virtualization.virtualmachine; fix or rename it in NetBox (not changed \
         automatically)"
    )]
    CustomFieldType {
        name: String,
        found: String,
        wanted: String,
    },
    #[error(
        "preflight: custom field '{name}' exists but is not enabled for \
         virtualization.virtualmachine; add that object type to it in NetBox"
    )]
    CustomFieldObjectType { name: String },
    #[error("preflight: {0}")]
    Ambiguous(String),
    /// The NetBox run lease, taken before preflight's first create, was refused.
    #[error(transparent)]
    Lease(Box<LeaseError>),
}

fn nb(what: impl Into<String>) -> impl FnOnce(NetboxError) -> PreflightError {
    let what = what.into();
    move |source| PreflightError::Netbox { what, source }
}

/// One Proxmox cluster (or standalone node) to manage.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub nodes: Vec<String>,
}

/// What preflight needs to know of the run.
#[derive(Debug, Clone)]
pub struct PreflightInput {
    pub clusters: Vec<ClusterSpec>,
    /// Site slug from the config.
    pub site: Option<String>,
    pub orphans: OrphanPolicy,
    /// Preview: create nothing.
    pub dry_run: bool,
    /// Task history on: ensure and read the clusters' task watermark field.
    pub task_history: bool,
}

/// What preflight found and made.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// NetBox version text for the rules' context.
    pub netbox_version: String,
    pub capabilities: Capabilities,
    /// Proxmox cluster name -> NetBox cluster id (placeholders for a preview's missing ones).
    pub cluster_ids: BTreeMap<String, u64>,
    /// Objects the rules and dispatch may reference: site, device, role, vm-type, platform,
    /// tag, tenant, cluster.
    pub known: Vec<KnownObject>,
    /// Custom fields on VMs that exist (or were created).
    pub custom_fields: BTreeSet<String>,
    /// A preview's missing objects (`kind:key`, in creation order).
    pub pending: Vec<ObjectSpec>,
    /// Objects created by this run's preflight.
    pub created: u64,
    /// True when a site is configured (devices are managed).
    pub has_site: bool,
    /// Proxmox cluster name -> the NetBox cluster's task watermark ([`TASKS_SINCE_FIELD`]),
    /// absent when unset.
    pub tasks_since: BTreeMap<String, i64>,
    /// True when [`TASKS_SINCE_FIELD`] exists on clusters with the right type (it may be
    /// written).
    pub tasks_since_field: bool,
}

impl Default for Preflight {
    fn default() -> Self {
        Preflight {
            netbox_version: String::new(),
            capabilities: Capabilities::of(MIN_SUPPORTED),
            cluster_ids: BTreeMap::new(),
            known: Vec::new(),
            custom_fields: BTreeSet::new(),
            pending: Vec::new(),
            created: 0,
            has_site: false,
            tasks_since: BTreeMap::new(),
            tasks_since_field: false,
        }
    }
}

impl Preflight {
    /// The id of a known object.
    pub fn id_of(&self, kind: &str, key: &str) -> Option<u64> {
        self.known
            .iter()
            .find(|k| k.kind == kind && k.key == key)
            .map(|k| k.id)
    }

    /// True when `id` is a preview placeholder.
    pub fn is_placeholder(id: u64) -> bool {
        id >= PLACEHOLDER_ID_BASE
    }
}

/// The custom fields the sync needs: (name, type, filter logic, label).
pub(crate) fn required_custom_fields(
    orphans: OrphanPolicy,
) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut fields = vec![
        (VM_ID_FIELD, "integer", "exact"),
        // Text fields filter by substring unless `exact`: `qemu` vs a typo must not match.
        (VM_TYPE_FIELD, "text", "exact"),
        (NODE_FIELD, "text", "exact"),
        (TAGS_FIELD, "text", "loose"),
    ];
    if orphans == OrphanPolicy::Delete {
        fields.push((MISSING_RUNS_FIELD, "integer", "exact"));
    }
    fields
}

fn s(obj: &Object, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn id(obj: &Object) -> u64 {
    obj.get("id").and_then(Value::as_u64).unwrap_or(0)
}

/// The `id` of a nested reference (`{"id": 3, ...}`) or a plain id.
pub(crate) fn ref_id(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Object(o) => o.get("id").and_then(Value::as_u64),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn known(kind: &str, key: String, id: u64, name: String) -> KnownObject {
    KnownObject {
        kind: kind.to_owned(),
        key,
        id,
        name,
    }
}

/// Slug-keyed objects as known objects.
fn known_by_slug(kind: &str, rows: &[Object]) -> Vec<KnownObject> {
    rows.iter()
        .filter_map(|r| {
            let slug = s(r, "slug")?;
            Some(known(kind, slug, id(r), s(r, "name").unwrap_or_default()))
        })
        .collect()
}

/// `name=a&name=b…`: NetBox ORs repeated values, so one request reads them all.
fn by_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    names.map(|n| ("name".to_owned(), n.to_owned())).collect()
}

/// A custom field's type (`{"value": …}` on reads, a plain string in older answers).
fn cf_type(cf: &Object) -> String {
    match cf.get("type") {
        Some(Value::Object(o)) => o.get("value").and_then(Value::as_str),
        Some(Value::String(t)) => Some(t.as_str()),
        _ => None,
    }
    .unwrap_or("")
    .to_owned()
}

/// True when the custom field is enabled for `object_type` (absent list: trust it).
pub(crate) fn cf_applies_to(cf: &Object, object_type: &str) -> bool {
    cf.get("object_types")
        .and_then(Value::as_array)
        .is_none_or(|a| a.iter().any(|t| t.as_str() == Some(object_type)))
}

/// Makes sure the clusters' task watermark field exists; false when an operator's field of
/// that name has another type or object type (task history then re-reads its look-back each
/// run instead of failing the sync).
async fn ensure_tasks_since_field(
    ctx: &mut Ctx<'_>,
    cfs: &[Object],
) -> Result<bool, PreflightError> {
    match cfs
        .iter()
        .find(|c| s(c, "name").as_deref() == Some(TASKS_SINCE_FIELD))
    {
        Some(existing) => {
            let usable =
                cf_type(existing) == "integer" && cf_applies_to(existing, CLUSTER_OBJECT_TYPE);
            if !usable {
                tracing::warn!(
                    field = TASKS_SINCE_FIELD,
                    "custom field exists but is not an integer field on virtualization.cluster; \
                     task history will re-read its look-back on every run"
                );
            }
            Ok(usable)
        }
        None => {
            let body = json!({
                "name": TASKS_SINCE_FIELD,
                "label": "proxmox tasks since",
                "type": "integer",
                "object_types": [CLUSTER_OBJECT_TYPE],
                "filter_logic": "exact",
                "ui_editable": "no",
                "description": "Maintained by pve2netbox: Proxmox tasks started before this \
                                epoch second are recorded in the VMs' journals",
            });
            ctx.create(
                "custom-field",
                TASKS_SINCE_FIELD,
                TASKS_SINCE_FIELD,
                "extras/custom-fields",
                body,
            )
            .await?;
            Ok(!ctx.dry_run)
        }
    }
}

/// The id of the cluster type `proxmox-ve`, created when missing.
async fn ensure_cluster_type(ctx: &mut Ctx<'_>) -> Result<u64, PreflightError> {
    let rows = ctx
        .client
        .list_all(
            "virtualization/cluster-types",
            &[("slug".into(), CLUSTER_TYPE_SLUG.into())],
            &["slug"],
        )
        .await
        .map_err(nb("listing virtualization/cluster-types"))?;
    if let Some(row) = rows
        .iter()
        .find(|r| s(r, "slug").as_deref() == Some(CLUSTER_TYPE_SLUG))
    {
        return Ok(id(row));
    }
    let body = json!({"name": CLUSTER_TYPE_NAME, "slug": CLUSTER_TYPE_SLUG});
    ctx.create(
        "cluster-type",
        CLUSTER_TYPE_SLUG,
        CLUSTER_TYPE_NAME,
        "virtualization/cluster-types",
        body,
    )
    .await
}

struct Ctx<'a> {
    client: &'a NetboxClient,
    /// Every create goes through it (the lease is taken before the first).
    lease: &'a NetboxLease,
    dry_run: bool,
    pending: Vec<ObjectSpec>,
    created: u64,
    next_placeholder: u64,
}

impl Ctx<'_> {
    /// Creates the object (or, in a preview, records it as pending) and returns its id.
    async fn create(
        &mut self,
        kind: &str,
        key: &str,
        name: &str,
        endpoint: &str,
        body: Value,
    ) -> Result<u64, PreflightError> {
        if self.dry_run {
            self.pending.push(ObjectSpec {
                kind: kind.to_owned(),
                key: key.to_owned(),
                name: name.to_owned(),
                attrs: JsonText::from_value(&body),
            });
            let placeholder = self.next_placeholder;
            self.next_placeholder += 1;
            return Ok(placeholder);
        }
        let writer = self
            .lease
            .ensure()
            .await
            .map_err(|e| PreflightError::Lease(Box::new(e)))?;
        let obj = writer
            .create(endpoint, &body, &["id"])
            .await
            .map_err(nb(format!("creating {kind} '{key}'")))?;
        self.created += 1;
        tracing::info!(
            kind,
            key,
            id = id(&obj),
            "preflight created a missing object"
        );
        Ok(id(&obj))
    }
}

/// Runs preflight: reads what exists, creates what is missing (or lists it in a preview).
pub async fn run(
    client: &NetboxClient,
    input: &PreflightInput,
    lease: &NetboxLease,
) -> Result<Preflight, PreflightError> {
    let status = client.status().await.map_err(nb("reading /api/status/"))?;
    let caps = status.capabilities;
    let list = |endpoint: &'static str,
                filters: Vec<(String, String)>,
                fields: &'static [&'static str]| async move {
        client
            .list_all(endpoint, &filters, fields)
            .await
            .map_err(nb(format!("listing {endpoint}")))
    };
    let cf_wanted = required_custom_fields(input.orphans);
    // Repeated `name` values are ORed: one request for every cluster.
    let cluster_filter = by_names(input.clusters.iter().map(|c| c.name.as_str()));
    let vm_types = async {
        if caps.virtual_machine_type {
            list(
                "virtualization/virtual-machine-types",
                Vec::new(),
                &["name", "slug"],
            )
            .await
        } else {
            Ok(Vec::new())
        }
    };
    // Independent reads, in parallel: NetBox serves a few at once, and each is one page.
    let clusters = async {
        if input.clusters.is_empty() {
            Ok(Vec::new())
        } else {
            list(
                "virtualization/clusters",
                cluster_filter,
                &["name", "type", "custom_fields"],
            )
            .await
        }
    };
    // The families the rules may reference are listed whole (the rules' `known` objects).
    let (cfs, tags, sites, roles, clusters, platforms, tenants, vm_types) = tokio::join!(
        // All of them (a site has a few dozen): the rules may set any custom field on VMs, and
        // one they set that NetBox lacks fails that VM rather than its whole bulk request.
        list(
            "extras/custom-fields",
            Vec::new(),
            &["name", "type", "object_types"]
        ),
        list("extras/tags", Vec::new(), &["name", "slug"]),
        list("dcim/sites", Vec::new(), &["name", "slug"]),
        list("dcim/device-roles", Vec::new(), &["name", "slug"]),
        clusters,
        list("dcim/platforms", Vec::new(), &["name", "slug"]),
        list("tenancy/tenants", Vec::new(), &["name", "slug"]),
        vm_types,
    );
    let (cfs, tags, sites, roles, clusters, platforms, tenants, vm_types) = (
        cfs?, tags?, sites?, roles?, clusters?, platforms?, tenants?, vm_types?,
    );
    let mut ctx = Ctx {
        client,
        lease,
        dry_run: input.dry_run,
        pending: Vec::new(),
        created: 0,
        next_placeholder: PLACEHOLDER_ID_BASE,
    };
    let mut out = Preflight {
        netbox_version: status.version_text.clone(),
        capabilities: caps,
        has_site: input.site.is_some(),
        ..Preflight::default()
    };

    // Custom fields: a wrong type or object type is an operator's edit we refuse to undo.
    for (name, kind, filter_logic) in cf_wanted {
        match cfs.iter().find(|c| s(c, "name").as_deref() == Some(name)) {
            Some(existing) => {
                let found = cf_type(existing);
                if found != kind {
                    return Err(PreflightError::CustomFieldType {
                        name: name.to_owned(),
                        found,
                        wanted: kind.to_owned(),
                    });
                }
                if !cf_applies_to(existing, VM_OBJECT_TYPE) {
                    return Err(PreflightError::CustomFieldObjectType {
                        name: name.to_owned(),
                    });
                }
            }
            None => {
                let body = json!({
                    "name": name,
                    "label": name.replace('_', " "),
                    "type": kind,
                    "object_types": [VM_OBJECT_TYPE],
                    "filter_logic": filter_logic,
                    "description": "Maintained by pve2netbox",
                });
                ctx.create("custom-field", name, name, "extras/custom-fields", body)
                    .await?;
            }
        }
        out.custom_fields.insert(name.to_owned());
    }
    out.custom_fields.extend(
        cfs.iter()
            .filter(|c| cf_applies_to(c, VM_OBJECT_TYPE))
            .filter_map(|c| s(c, "name")),
    );
    if input.task_history {
        out.tasks_since_field = ensure_tasks_since_field(&mut ctx, &cfs).await?;
    }

    // Tags.
    out.known.extend(known_by_slug("tag", &tags));
    let mut wanted_tags = vec![(MANAGED_TAG, "Managed by pve2netbox")];
    if input.orphans != OrphanPolicy::Report {
        wanted_tags.push((ORPHAN_TAG, "Guest gone from Proxmox (pve2netbox)"));
    }
    for (slug, description) in wanted_tags {
        if out.id_of("tag", slug).is_none() {
            let body = json!({"name": slug, "slug": slug, "color": DEFAULT_COLOR,
                              "description": description});
            let new_id = ctx.create("tag", slug, slug, "extras/tags", body).await?;
            out.known
                .push(known("tag", slug.into(), new_id, slug.into()));
        }
    }

    out.known.extend(known_by_slug("site", &sites));
    out.known.extend(known_by_slug("role", &roles));
    out.known.extend(known_by_slug("platform", &platforms));
    out.known.extend(known_by_slug("tenant", &tenants));
    out.known.extend(known_by_slug("vm-type", &vm_types));

    // The site: from the config only. Created when named but missing (the operator asked for it).
    let site_id = match &input.site {
        None => None,
        Some(slug) => Some(match out.id_of("site", slug) {
            Some(site_id) => site_id,
            None => {
                let body = json!({"name": slug, "slug": slug, "status": "active"});
                let new_id = ctx.create("site", slug, slug, "dcim/sites", body).await?;
                out.known
                    .push(known("site", slug.clone(), new_id, slug.clone()));
                new_id
            }
        }),
    };

    // Clusters, by name; the cluster type is only looked up when a cluster must be made.
    let mut type_id: Option<u64> = None;
    for spec in &input.clusters {
        let same_name: Vec<&Object> = clusters
            .iter()
            .filter(|c| s(c, "name").as_deref() == Some(spec.name.as_str()))
            .collect();
        // Cluster names are unique per group and site, not globally: prefer ours by type.
        let ours: Vec<&Object> = same_name
            .iter()
            .filter(|c| {
                c.get("type")
                    .and_then(|t| t.get("slug"))
                    .and_then(Value::as_str)
                    == Some(CLUSTER_TYPE_SLUG)
            })
            .copied()
            .collect();
        let cluster_id = match (same_name.as_slice(), ours.as_slice()) {
            ([], _) => {
                let type_id = match type_id {
                    Some(t) => t,
                    None => *type_id.insert(ensure_cluster_type(&mut ctx).await?),
                };
                let mut body = json!({"name": spec.name, "type": type_id, "status": "active"});
                if let Some(site_id) = site_id.filter(|i| !Preflight::is_placeholder(*i)) {
                    if caps.cluster_scope {
                        body["scope_type"] = json!("dcim.site");
                        body["scope_id"] = json!(site_id);
                    } else {
                        body["site"] = json!(site_id);
                    }
                }
                ctx.create(
                    "cluster",
                    &spec.name,
                    &spec.name,
                    "virtualization/clusters",
                    body,
                )
                .await?
            }
            ([one], _) | (_, [one]) => {
                if let Some(since) = one
                    .get("custom_fields")
                    .and_then(|c| c.get(TASKS_SINCE_FIELD))
                    .and_then(Value::as_i64)
                {
                    out.tasks_since.insert(spec.name.clone(), since);
                }
                id(one)
            }
            (many, _) => {
                return Err(PreflightError::Ambiguous(format!(
                    "{} NetBox clusters are named '{}' (ids {}); rename all but one, or give \
                     exactly one the cluster type '{CLUSTER_TYPE_SLUG}'",
                    many.len(),
                    spec.name,
                    many.iter()
                        .map(|c| id(c).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        out.cluster_ids.insert(spec.name.clone(), cluster_id);
        out.known.push(known(
            "cluster",
            spec.name.clone(),
            cluster_id,
            spec.name.clone(),
        ));
    }

    if let Some(site_id) = site_id {
        ensure_devices(&mut ctx, &mut out, input, site_id).await?;
    }

    out.pending = ctx.pending;
    out.created = ctx.created;
    Ok(out)
}

/// One device per node at the configured site; the manufacturer, device type and node role
/// are only looked up (and created when missing) when a device must be made.
async fn ensure_devices(
    ctx: &mut Ctx<'_>,
    out: &mut Preflight,
    input: &PreflightInput,
    site_id: u64,
) -> Result<(), PreflightError> {
    let client = ctx.client;
    let devices = if Preflight::is_placeholder(site_id) {
        Vec::new()
    } else {
        client
            .list_all(
                "dcim/devices",
                &[("site_id".into(), site_id.to_string())],
                &["name"],
            )
            .await
            .map_err(nb("listing dcim/devices"))?
    };
    // Device names are unique per site, case-insensitively.
    let by_name: BTreeMap<String, &Object> = devices
        .iter()
        .filter_map(|d| Some((s(d, "name")?.to_lowercase(), d)))
        .collect();
    // (device type, role) ids, resolved at the first missing device.
    let mut parents: Option<(u64, u64)> = None;
    for spec in &input.clusters {
        let cluster_id = out.cluster_ids.get(&spec.name).copied().unwrap_or(0);
        for node in &spec.nodes {
            let device_id = match by_name.get(&node.to_lowercase()) {
                Some(d) => id(d),
                None => {
                    let (device_type_id, role_id) = match parents {
                        Some(p) => p,
                        None => *parents.insert(ensure_device_parents(ctx, out).await?),
                    };
                    let body = json!({"name": node, "role": role_id, "device_type": device_type_id,
                                      "site": site_id, "cluster": cluster_id, "status": "active"});
                    ctx.create("device", node, node, "dcim/devices", body)
                        .await?
                }
            };
            out.known
                .push(known("device", node.clone(), device_id, node.clone()));
        }
    }
    Ok(())
}

/// The manufacturer "Proxmox", its generic device type and the node role: (device type id,
/// role id), each created when missing.
async fn ensure_device_parents(
    ctx: &mut Ctx<'_>,
    out: &mut Preflight,
) -> Result<(u64, u64), PreflightError> {
    let client = ctx.client;
    let slug_filter = |slug: &str| vec![("slug".to_owned(), slug.to_owned())];
    let manufacturers = client
        .list_all(
            "dcim/manufacturers",
            &slug_filter(MANUFACTURER.1),
            &["slug"],
        )
        .await
        .map_err(nb("listing dcim/manufacturers"))?;
    let manufacturer_id = match manufacturers
        .iter()
        .find(|m| s(m, "slug").as_deref() == Some(MANUFACTURER.1))
    {
        Some(m) => id(m),
        None => {
            let body = json!({"name": MANUFACTURER.0, "slug": MANUFACTURER.1});
            ctx.create(
                "manufacturer",
                MANUFACTURER.1,
                MANUFACTURER.0,
                "dcim/manufacturers",
                body,
            )
            .await?
        }
    };
    let device_type_id = {
        let rows = if Preflight::is_placeholder(manufacturer_id) {
            Vec::new()
        } else {
            client
                .list_all(
                    "dcim/device-types",
                    &[("manufacturer_id".into(), manufacturer_id.to_string())],
                    &["slug", "model"],
                )
                .await
                .map_err(nb("listing dcim/device-types"))?
        };
        match rows
            .iter()
            .find(|d| s(d, "slug").as_deref() == Some(DEVICE_TYPE.1))
        {
            Some(d) => id(d),
            None => {
                let body = json!({"manufacturer": manufacturer_id, "model": DEVICE_TYPE.0,
                                  "slug": DEVICE_TYPE.1});
                ctx.create(
                    "device-type",
                    DEVICE_TYPE.1,
                    DEVICE_TYPE.0,
                    "dcim/device-types",
                    body,
                )
                .await?
            }
        }
    };
    let role_id = match out.id_of("role", NODE_ROLE.1) {
        Some(role_id) => role_id,
        None => {
            let body = json!({"name": NODE_ROLE.0, "slug": NODE_ROLE.1, "color": DEFAULT_COLOR,
                              "vm_role": false});
            let new_id = ctx
                .create("role", NODE_ROLE.1, NODE_ROLE.0, "dcim/device-roles", body)
                .await?;
            out.known.push(known(
                "role",
                NODE_ROLE.1.into(),
                new_id,
                NODE_ROLE.0.into(),
            ));
            new_id
        }
    };
    Ok((device_type_id, role_id))
}

/// The NetBox endpoint of an object kind the rules may list in `needs`.
pub(crate) fn object_endpoint(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "platform" => "dcim/platforms",
        "tag" => "extras/tags",
        "role" => "dcim/device-roles",
        "vm-type" => "virtualization/virtual-machine-types",
        "tenant" => "tenancy/tenants",
        "site" => "dcim/sites",
        _ => return None,
    })
}

/// The create body of a `needs` object: name and slug, kind defaults, then the rules' attrs.
pub(crate) fn object_body(spec: &ObjectSpec) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(spec.name));
    body.insert("slug".into(), json!(spec.key));
    match spec.kind.as_str() {
        "tag" => {
            body.insert("color".into(), json!(DEFAULT_COLOR));
        }
        "role" => {
            body.insert("color".into(), json!(DEFAULT_COLOR));
            body.insert("vm_role".into(), json!(true));
        }
        "site" => {
            body.insert("status".into(), json!("active"));
        }
        _ => {}
    }
    if let Value::Object(attrs) = spec.attrs.to_value() {
        body.extend(attrs);
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_bodies_take_defaults_then_attrs() {
        let spec = ObjectSpec {
            kind: "role".into(),
            key: "container-lxc".into(),
            name: "Container (LXC)".into(),
            attrs: JsonText("{\"color\":\"ff9800\"}".into()),
        };
        assert_eq!(
            object_body(&spec),
            json!({"name": "Container (LXC)", "slug": "container-lxc", "color": "ff9800",
                   "vm_role": true})
        );
        assert_eq!(
            object_endpoint("vm-type"),
            Some("virtualization/virtual-machine-types")
        );
        assert_eq!(object_endpoint("cluster"), None);
    }

    #[test]
    fn delete_policy_adds_the_missing_runs_field() {
        let names = |p| {
            required_custom_fields(p)
                .into_iter()
                .map(|f| f.0)
                .collect::<Vec<_>>()
        };
        assert!(!names(OrphanPolicy::Mark).contains(&MISSING_RUNS_FIELD));
        assert!(names(OrphanPolicy::Delete).contains(&MISSING_RUNS_FIELD));
        assert!(names(OrphanPolicy::Report).contains(&VM_ID_FIELD));
    }
}
