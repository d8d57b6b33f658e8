//! The NetBox object types the simulator serves, as data: fields with kinds, requiredness,
//! defaults, the NetBox release they appear in, brief fields, uniqueness constraints and the
//! literal messages of their violations (reference B.3, B.6, B.7; netbox-live.md 2.4).
//!
//! One generic engine (store.rs, api.rs) reads these tables, so every type gets the same
//! nested reads, id/attribute writes, filters, trimming and bulk semantics.

/// Index of a type in [`TYPES`].
pub(crate) type Ty = usize;

pub(crate) const MANUFACTURER: Ty = 0;
pub(crate) const DEVICE_TYPE: Ty = 1;
pub(crate) const DEVICE_ROLE: Ty = 2;
pub(crate) const PLATFORM: Ty = 3;
pub(crate) const SITE: Ty = 4;
pub(crate) const DEVICE: Ty = 5;
pub(crate) const CLUSTER_TYPE: Ty = 6;
pub(crate) const CLUSTER: Ty = 7;
pub(crate) const VM: Ty = 8;
pub(crate) const VM_TYPE: Ty = 9;
pub(crate) const VDISK: Ty = 10;
pub(crate) const TENANT: Ty = 11;
pub(crate) const TAG: Ty = 12;
pub(crate) const CUSTOM_FIELD: Ty = 13;
pub(crate) const JOURNAL: Ty = 14;
pub(crate) const OBJECT_CHANGE: Ty = 15;
pub(crate) const VRF: Ty = 16;
pub(crate) const VLAN: Ty = 17;
pub(crate) const VMINTERFACE: Ty = 18;
pub(crate) const MACADDR: Ty = 19;
pub(crate) const IPADDR: Ty = 20;

/// A NetBox release `(major, minor)`.
pub(crate) type Ver = (u8, u8);

pub(crate) type Choices = &'static [(&'static str, &'static str)];

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum OnDelete {
    Protect,
    SetNull,
    Cascade,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// CharField with a maximum length.
    Str(usize),
    /// TextField.
    Text,
    Slug,
    /// Integer with a minimum.
    Int(i64),
    /// Decimal read back as a JSON float (`vcpus`).
    Decimal,
    Bool,
    /// Choice read as `{value,label}`.
    Choice(Choices),
    /// String restricted to a list, read as a plain string.
    Plain(&'static [&'static str]),
    /// Foreign key, nested brief on read, id or attribute dict on write.
    Fk(Ty, OnDelete),
    Json,
    /// List of strings (`object_types`).
    StrList,
    /// `rrggbb`.
    Color,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Def {
    Blank,
    Null,
    Str(&'static str),
    Bool(bool),
    Int(i64),
    Float(f64),
    EmptyList,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) required: bool,
    pub(crate) nullable: bool,
    pub(crate) default: Def,
    pub(crate) since: Ver,
    /// The first version without the field.
    pub(crate) until: Ver,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    let nullable = matches!(
        kind,
        Kind::Fk(..) | Kind::Int(_) | Kind::Decimal | Kind::Json
    );
    Field {
        name,
        kind,
        required: false,
        nullable,
        default: if nullable { Def::Null } else { Def::Blank },
        since: (4, 0),
        until: (u8::MAX, 0),
    }
}

impl Field {
    const fn req(mut self) -> Self {
        self.required = true;
        self.nullable = false;
        self
    }
    const fn def(mut self, d: Def) -> Self {
        self.default = d;
        self
    }
    /// A nullable choice (`mode`, `role`): null when unset.
    const fn null(mut self) -> Self {
        self.nullable = true;
        self.default = Def::Null;
        self
    }
    const fn since(mut self, major: u8, minor: u8) -> Self {
        self.since = (major, minor);
        self
    }
    const fn until(mut self, major: u8, minor: u8) -> Self {
        self.until = (major, minor);
        self
    }
    /// Whether NetBox `v` has the field.
    pub(crate) fn in_version(&self, v: Ver) -> bool {
        v >= self.since && v < self.until
    }
}

/// How a unique constraint's violation is reported.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UniqueErr {
    /// Under the field name: `{"name":["site with this name already exists."]}`.
    Field(&'static str, &'static str),
    /// Object level: `{"__all__":[msg]}`.
    All(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Unique {
    pub(crate) fields: &'static [&'static str],
    /// Compare the first field case-insensitively (`lower(name)` indexes).
    pub(crate) ci: bool,
    /// Only when this field is set.
    pub(crate) when_set: Option<&'static str>,
    /// Only when this field is null.
    pub(crate) when_null: Option<&'static str>,
    pub(crate) err: UniqueErr,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Order {
    /// Natural order of `name`, then id.
    Name,
    /// Natural order of another field, then id.
    Field(&'static str),
    /// Newest first.
    CreatedDesc,
}

pub(crate) struct TypeDef {
    /// URL segment (`virtual-machines`).
    pub(crate) key: &'static str,
    pub(crate) app: &'static str,
    /// `app.model` label used by `object_types`, journals and change records.
    pub(crate) model: &'static str,
    /// Django class name (404 `No VirtualMachine matches the given query.`).
    pub(crate) class: &'static str,
    pub(crate) fields: &'static [Field],
    pub(crate) brief: &'static [&'static str],
    pub(crate) since: Ver,
    pub(crate) order: Order,
    pub(crate) tags: bool,
    pub(crate) custom_fields: bool,
    /// Field shown as `display` and used by `{f}=` filters on references.
    pub(crate) display: &'static str,
    pub(crate) uniques: &'static [Unique],
    /// Fields `q=` searches (icontains).
    pub(crate) q: &'static [&'static str],
    /// Read-only endpoint (object changes).
    pub(crate) read_only: bool,
}

impl TypeDef {
    pub(crate) fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }
    pub(crate) fn has_slug(&self) -> bool {
        self.fields.iter().any(|f| f.kind == Kind::Slug)
    }
}

pub(crate) const VM_STATUS: Choices = &[
    ("offline", "Offline"),
    ("active", "Active"),
    ("planned", "Planned"),
    ("staged", "Staged"),
    ("failed", "Failed"),
    ("decommissioning", "Decommissioning"),
    ("paused", "Paused"),
];
const START_ON_BOOT: Choices = &[("on", "On"), ("off", "Off"), ("laststate", "Last State")];
const SITE_STATUS: Choices = &[
    ("planned", "Planned"),
    ("staging", "Staging"),
    ("active", "Active"),
    ("decommissioning", "Decommissioning"),
    ("retired", "Retired"),
];
const DEVICE_STATUS: Choices = &[
    ("offline", "Offline"),
    ("active", "Active"),
    ("planned", "Planned"),
    ("staged", "Staged"),
    ("failed", "Failed"),
    ("inventory", "Inventory"),
    ("decommissioning", "Decommissioning"),
];
const CLUSTER_STATUS: Choices = &[
    ("planned", "Planned"),
    ("staging", "Staging"),
    ("active", "Active"),
    ("decommissioning", "Decommissioning"),
    ("offline", "Offline"),
];
const JOURNAL_KIND: Choices = &[
    ("info", "Info"),
    ("success", "Success"),
    ("warning", "Warning"),
    ("danger", "Danger"),
];
pub(crate) const CF_TYPES: Choices = &[
    ("text", "Text"),
    ("longtext", "Text (long)"),
    ("integer", "Integer"),
    ("decimal", "Decimal"),
    ("boolean", "Boolean (true/false)"),
    ("date", "Date"),
    ("datetime", "Date & time"),
    ("url", "URL"),
    ("json", "JSON"),
    ("select", "Selection"),
    ("multiselect", "Multiple selection"),
    ("object", "Object"),
    ("multiobject", "Multiple objects"),
];
const FILTER_LOGIC: Choices = &[
    ("disabled", "Disabled"),
    ("loose", "Loose"),
    ("exact", "Exact"),
];
const UI_VISIBLE: Choices = &[
    ("always", "Always"),
    ("if-set", "If set"),
    ("hidden", "Hidden"),
];
const UI_EDITABLE: Choices = &[("yes", "Yes"), ("no", "No"), ("hidden", "Hidden")];
const CHANGE_ACTION: Choices = &[
    ("create", "Created"),
    ("update", "Updated"),
    ("delete", "Deleted"),
];
const VLAN_STATUS: Choices = &[
    ("active", "Active"),
    ("reserved", "Reserved"),
    ("deprecated", "Deprecated"),
];
const IP_STATUS: Choices = &[
    ("active", "Active"),
    ("reserved", "Reserved"),
    ("deprecated", "Deprecated"),
    ("dhcp", "DHCP"),
    ("slaac", "SLAAC"),
];
/// IP roles; the first six are `IPADDRESS_ROLES_NONUNIQUE` (exempt from `enforce_unique`).
const IP_ROLE: Choices = &[
    ("anycast", "Anycast"),
    ("vip", "VIP"),
    ("vrrp", "VRRP"),
    ("hsrp", "HSRP"),
    ("glbp", "GLBP"),
    ("carp", "CARP"),
    ("loopback", "Loopback"),
    ("secondary", "Secondary"),
];
/// Roles whose addresses may repeat under `enforce_unique` (NetBox `IPADDRESS_ROLES_NONUNIQUE`).
pub(crate) const IP_ROLES_NONUNIQUE: &[&str] = &["anycast", "vip", "vrrp", "hsrp", "glbp", "carp"];
const IFACE_MODE: Choices = &[
    ("access", "Access"),
    ("tagged", "Tagged"),
    ("tagged-all", "Tagged (All)"),
];
/// What IP and MAC addresses can be assigned to (`assigned_object_type`).
pub(crate) const ASSIGNABLE: &[&str] = &["dcim.interface", "virtualization.vminterface"];

/// Cluster scopes (4.2+). Only `dcim.site` points at a simulated table.
pub(crate) const SCOPE_TYPES: &[&str] = &[
    "dcim.region",
    "dcim.sitegroup",
    "dcim.site",
    "dcim.location",
];

const NAME100: Field = f("name", Kind::Str(100)).req();
const SLUG: Field = f("slug", Kind::Slug).req();
const DESCRIPTION: Field = f("description", Kind::Str(200));
const COMMENTS: Field = f("comments", Kind::Text);
const BRIEF_SLUG: &[&str] = &["id", "url", "display", "name", "slug", "description"];
const BRIEF_NAME: &[&str] = &["id", "url", "display", "name", "description"];

macro_rules! org_uniques {
    ($name_msg:literal, $slug_msg:literal) => {
        &[
            Unique {
                fields: &["name"],
                ci: false,
                when_set: None,
                when_null: None,
                err: UniqueErr::Field("name", $name_msg),
            },
            Unique {
                fields: &["slug"],
                ci: false,
                when_set: None,
                when_null: None,
                err: UniqueErr::Field("slug", $slug_msg),
            },
        ]
    };
}

pub(crate) static TYPES: [TypeDef; 21] = [
    TypeDef {
        key: "manufacturers",
        app: "dcim",
        model: "dcim.manufacturer",
        class: "Manufacturer",
        fields: &[NAME100, SLUG, DESCRIPTION],
        brief: BRIEF_SLUG,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: org_uniques!(
            "manufacturer with this name already exists.",
            "manufacturer with this slug already exists."
        ),
        q: &["name", "slug", "description"],
        read_only: false,
    },
    TypeDef {
        key: "device-types",
        app: "dcim",
        model: "dcim.devicetype",
        class: "DeviceType",
        fields: &[
            f("manufacturer", Kind::Fk(MANUFACTURER, OnDelete::Protect)).req(),
            f("model", Kind::Str(100)).req(),
            SLUG,
            f("part_number", Kind::Str(50)),
            f("u_height", Kind::Decimal).def(Def::Float(1.0)),
            f("is_full_depth", Kind::Bool).def(Def::Bool(true)),
            DESCRIPTION,
            COMMENTS,
        ],
        brief: &[
            "id",
            "url",
            "display",
            "manufacturer",
            "model",
            "slug",
            "description",
        ],
        since: (4, 0),
        order: Order::Field("model"),
        tags: true,
        custom_fields: true,
        display: "model",
        uniques: &[
            Unique {
                fields: &["manufacturer", "model"],
                ci: false,
                when_set: None,
                when_null: None,
                err: UniqueErr::All("Device type with this Manufacturer and Model already exists."),
            },
            Unique {
                fields: &["manufacturer", "slug"],
                ci: false,
                when_set: None,
                when_null: None,
                err: UniqueErr::All("Device type with this Manufacturer and Slug already exists."),
            },
        ],
        q: &["model", "slug", "part_number", "description", "comments"],
        read_only: false,
    },
    TypeDef {
        key: "device-roles",
        app: "dcim",
        model: "dcim.devicerole",
        class: "DeviceRole",
        fields: &[
            NAME100,
            SLUG,
            f("color", Kind::Color).def(Def::Str("9e9e9e")),
            f("vm_role", Kind::Bool).def(Def::Bool(true)),
            DESCRIPTION,
            f("parent", Kind::Fk(DEVICE_ROLE, OnDelete::Cascade)).since(4, 3),
        ],
        brief: BRIEF_SLUG,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: org_uniques!(
            "device role with this name already exists.",
            "device role with this slug already exists."
        ),
        q: &["name", "slug", "description"],
        read_only: false,
    },
    TypeDef {
        key: "platforms",
        app: "dcim",
        model: "dcim.platform",
        class: "Platform",
        fields: &[
            NAME100,
            SLUG,
            f("manufacturer", Kind::Fk(MANUFACTURER, OnDelete::SetNull)),
            DESCRIPTION,
            f("parent", Kind::Fk(PLATFORM, OnDelete::Cascade)).since(4, 4),
        ],
        brief: BRIEF_SLUG,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: org_uniques!(
            "platform with this name already exists.",
            "platform with this slug already exists."
        ),
        q: &["name", "slug", "description"],
        read_only: false,
    },
    TypeDef {
        key: "sites",
        app: "dcim",
        model: "dcim.site",
        class: "Site",
        fields: &[
            NAME100,
            SLUG,
            f("status", Kind::Choice(SITE_STATUS)).def(Def::Str("active")),
            f("tenant", Kind::Fk(TENANT, OnDelete::Protect)),
            f("facility", Kind::Str(50)),
            DESCRIPTION,
            COMMENTS,
        ],
        brief: BRIEF_SLUG,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: org_uniques!(
            "site with this name already exists.",
            "site with this slug already exists."
        ),
        q: &["name", "slug", "facility", "description", "comments"],
        read_only: false,
    },
    TypeDef {
        key: "devices",
        app: "dcim",
        model: "dcim.device",
        class: "Device",
        fields: &[
            f("name", Kind::Str(64)).def(Def::Null),
            f("device_type", Kind::Fk(DEVICE_TYPE, OnDelete::Protect)).req(),
            f("role", Kind::Fk(DEVICE_ROLE, OnDelete::Protect)).req(),
            f("tenant", Kind::Fk(TENANT, OnDelete::Protect)),
            f("platform", Kind::Fk(PLATFORM, OnDelete::SetNull)),
            f("serial", Kind::Str(50)),
            f("site", Kind::Fk(SITE, OnDelete::Protect)).req(),
            f("status", Kind::Choice(DEVICE_STATUS)).def(Def::Str("active")),
            f("cluster", Kind::Fk(CLUSTER, OnDelete::SetNull)),
            DESCRIPTION,
            COMMENTS,
        ],
        brief: BRIEF_NAME,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: &[Unique {
            fields: &["name", "site", "tenant"],
            ci: true,
            when_set: Some("name"),
            when_null: None,
            err: UniqueErr::All("Device name must be unique per site."),
        }],
        q: &["name", "serial", "description", "comments"],
        read_only: false,
    },
    TypeDef {
        key: "cluster-types",
        app: "virtualization",
        model: "virtualization.clustertype",
        class: "ClusterType",
        fields: &[NAME100, SLUG, DESCRIPTION],
        brief: BRIEF_SLUG,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: org_uniques!(
            "cluster type with this name already exists.",
            "cluster type with this slug already exists."
        ),
        q: &["name", "slug", "description"],
        read_only: false,
    },
    TypeDef {
        key: "clusters",
        app: "virtualization",
        model: "virtualization.cluster",
        class: "Cluster",
        fields: &[
            NAME100,
            f("type", Kind::Fk(CLUSTER_TYPE, OnDelete::Protect)).req(),
            f("status", Kind::Choice(CLUSTER_STATUS)).def(Def::Str("active")),
            f("tenant", Kind::Fk(TENANT, OnDelete::Protect)),
            f("scope_type", Kind::Plain(SCOPE_TYPES))
                .def(Def::Null)
                .since(4, 2),
            f("scope_id", Kind::Int(0)).since(4, 2),
            DESCRIPTION,
            COMMENTS,
        ],
        brief: BRIEF_NAME,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: &[],
        q: &["name", "description", "comments"],
        read_only: false,
    },
    TypeDef {
        key: "virtual-machines",
        app: "virtualization",
        model: "virtualization.virtualmachine",
        class: "VirtualMachine",
        fields: &[
            f("name", Kind::Str(64)).req(),
            f("virtual_machine_type", Kind::Fk(VM_TYPE, OnDelete::SetNull)).since(4, 6),
            f("role", Kind::Fk(DEVICE_ROLE, OnDelete::Protect)),
            f("status", Kind::Choice(VM_STATUS)).def(Def::Str("active")),
            f("start_on_boot", Kind::Choice(START_ON_BOOT))
                .def(Def::Str("off"))
                .since(4, 5),
            f("site", Kind::Fk(SITE, OnDelete::Protect)),
            f("cluster", Kind::Fk(CLUSTER, OnDelete::Protect)),
            f("device", Kind::Fk(DEVICE, OnDelete::Protect)),
            f("platform", Kind::Fk(PLATFORM, OnDelete::SetNull)),
            f("primary_ip4", Kind::Fk(IPADDR, OnDelete::SetNull)),
            f("primary_ip6", Kind::Fk(IPADDR, OnDelete::SetNull)),
            f("vcpus", Kind::Decimal),
            f("memory", Kind::Int(0)),
            f("disk", Kind::Int(0)),
            DESCRIPTION,
            f("serial", Kind::Str(50)),
            f("tenant", Kind::Fk(TENANT, OnDelete::Protect)),
            COMMENTS,
            f("local_context_data", Kind::Json),
        ],
        brief: BRIEF_NAME,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: &[
            Unique {
                fields: &["name", "cluster", "tenant"],
                ci: true,
                when_set: Some("cluster"),
                when_null: None,
                err: UniqueErr::All("Virtual machine name must be unique per cluster and tenant."),
            },
            Unique {
                fields: &["name", "device", "tenant"],
                ci: true,
                when_set: Some("device"),
                when_null: Some("cluster"),
                err: UniqueErr::All("Virtual machine name must be unique per device and tenant."),
            },
        ],
        q: &["name", "description", "comments", "serial"],
        read_only: false,
    },
    TypeDef {
        key: "virtual-machine-types",
        app: "virtualization",
        model: "virtualization.virtualmachinetype",
        class: "VirtualMachineType",
        fields: &[
            NAME100,
            SLUG,
            f("default_vcpus", Kind::Decimal),
            f("default_memory", Kind::Int(0)),
            DESCRIPTION,
        ],
        brief: BRIEF_SLUG,
        since: (4, 6),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: &[
            Unique {
                fields: &["name"],
                ci: true,
                when_set: None,
                when_null: None,
                err: UniqueErr::Field(
                    "name",
                    "virtual machine type with this name already exists.",
                ),
            },
            Unique {
                fields: &["slug"],
                ci: false,
                when_set: None,
                when_null: None,
                err: UniqueErr::Field(
                    "slug",
                    "virtual machine type with this slug already exists.",
                ),
            },
        ],
        q: &["name", "slug", "description"],
        read_only: false,
    },
    TypeDef {
        key: "virtual-disks",
        app: "virtualization",
        model: "virtualization.virtualdisk",
        class: "VirtualDisk",
        fields: &[
            f("virtual_machine", Kind::Fk(VM, OnDelete::Cascade)).req(),
            f("name", Kind::Str(64)).req(),
            f("size", Kind::Int(0)).req(),
            DESCRIPTION,
        ],
        brief: &[
            "id",
            "url",
            "display",
            "virtual_machine",
            "name",
            "size",
            "description",
        ],
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: &[Unique {
            fields: &["virtual_machine", "name"],
            ci: false,
            when_set: None,
            when_null: None,
            err: UniqueErr::All("Virtual disk with this Virtual machine and Name already exists."),
        }],
        q: &["name", "description"],
        read_only: false,
    },
    TypeDef {
        key: "tenants",
        app: "tenancy",
        model: "tenancy.tenant",
        class: "Tenant",
        fields: &[NAME100, SLUG, DESCRIPTION, COMMENTS],
        brief: BRIEF_SLUG,
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: org_uniques!(
            "tenant with this name already exists.",
            "tenant with this slug already exists."
        ),
        q: &["name", "slug", "description", "comments"],
        read_only: false,
    },
    TypeDef {
        key: "tags",
        app: "extras",
        model: "extras.tag",
        class: "Tag",
        fields: &[
            NAME100,
            SLUG,
            f("color", Kind::Color).def(Def::Str("9e9e9e")),
            DESCRIPTION,
            f("weight", Kind::Int(0)).def(Def::Int(1000)),
            f("object_types", Kind::StrList).def(Def::EmptyList),
        ],
        brief: &[
            "id",
            "url",
            "display_url",
            "display",
            "name",
            "slug",
            "color",
            "description",
        ],
        since: (4, 0),
        order: Order::Name,
        tags: false,
        custom_fields: false,
        display: "name",
        uniques: org_uniques!(
            "tag with this name already exists.",
            "tag with this slug already exists."
        ),
        q: &["name", "slug", "description"],
        read_only: false,
    },
    TypeDef {
        key: "custom-fields",
        app: "extras",
        model: "extras.customfield",
        class: "CustomField",
        fields: &[
            f("object_types", Kind::StrList).req(),
            f("type", Kind::Choice(CF_TYPES)).def(Def::Str("text")),
            f("name", Kind::Str(50)).req(),
            f("label", Kind::Str(50)),
            f("group_name", Kind::Str(50)),
            DESCRIPTION,
            f("required", Kind::Bool).def(Def::Bool(false)),
            f("unique", Kind::Bool).def(Def::Bool(false)),
            f("search_weight", Kind::Int(0)).def(Def::Int(1000)),
            f("filter_logic", Kind::Choice(FILTER_LOGIC)).def(Def::Str("loose")),
            f("ui_visible", Kind::Choice(UI_VISIBLE)).def(Def::Str("always")),
            f("ui_editable", Kind::Choice(UI_EDITABLE)).def(Def::Str("yes")),
            f("is_cloneable", Kind::Bool).def(Def::Bool(false)),
            f("default", Kind::Json),
            f("weight", Kind::Int(0)).def(Def::Int(100)),
            f("validation_minimum", Kind::Int(i64::MIN)),
            f("validation_maximum", Kind::Int(i64::MIN)),
            f("validation_regex", Kind::Str(500)),
        ],
        brief: &["id", "url", "display", "name", "description"],
        since: (4, 0),
        order: Order::Name,
        tags: false,
        custom_fields: false,
        display: "name",
        uniques: &[Unique {
            fields: &["name"],
            ci: false,
            when_set: None,
            when_null: None,
            err: UniqueErr::Field("name", "custom field with this name already exists."),
        }],
        q: &["name", "label", "description"],
        read_only: false,
    },
    TypeDef {
        key: "journal-entries",
        app: "extras",
        model: "extras.journalentry",
        class: "JournalEntry",
        fields: &[
            f("assigned_object_type", Kind::Str(100)).req(),
            f("assigned_object_id", Kind::Int(0)).req(),
            f("kind", Kind::Choice(JOURNAL_KIND)).def(Def::Str("info")),
            f("comments", Kind::Text).req(),
        ],
        brief: &["id", "url", "display", "created"],
        since: (4, 0),
        order: Order::CreatedDesc,
        tags: true,
        custom_fields: true,
        display: "created",
        uniques: &[],
        q: &["comments"],
        read_only: false,
    },
    TypeDef {
        key: "object-changes",
        app: "core",
        model: "core.objectchange",
        class: "ObjectChange",
        fields: &[
            f("user_name", Kind::Str(150)),
            f("request_id", Kind::Str(36)),
            f("action", Kind::Choice(CHANGE_ACTION)),
            f("changed_object_type", Kind::Str(100)),
            f("changed_object_id", Kind::Int(0)),
            f("object_repr", Kind::Str(200)),
            f("message", Kind::Str(200)).since(4, 4),
            f("prechange_data", Kind::Json),
            f("postchange_data", Kind::Json),
        ],
        brief: &[
            "id",
            "url",
            "display",
            "time",
            "action",
            "changed_object_type",
            "changed_object_id",
        ],
        since: (4, 1),
        order: Order::CreatedDesc,
        tags: false,
        custom_fields: false,
        display: "object_repr",
        uniques: &[],
        q: &["object_repr"],
        read_only: true,
    },
    TypeDef {
        key: "vrfs",
        app: "ipam",
        model: "ipam.vrf",
        class: "VRF",
        fields: &[
            NAME100,
            f("rd", Kind::Str(21)),
            f("tenant", Kind::Fk(TENANT, OnDelete::Protect)),
            f("enforce_unique", Kind::Bool).def(Def::Bool(true)),
            DESCRIPTION,
            COMMENTS,
        ],
        brief: &["id", "url", "display", "name", "rd", "description"],
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: &[],
        q: &["name", "rd", "description"],
        read_only: false,
    },
    TypeDef {
        key: "vlans",
        app: "ipam",
        model: "ipam.vlan",
        class: "VLAN",
        fields: &[
            f("site", Kind::Fk(SITE, OnDelete::Protect)),
            f("vid", Kind::Int(1)).req(),
            f("name", Kind::Str(64)).req(),
            f("tenant", Kind::Fk(TENANT, OnDelete::Protect)),
            f("status", Kind::Choice(VLAN_STATUS)).def(Def::Str("active")),
            DESCRIPTION,
            COMMENTS,
        ],
        brief: &["id", "url", "display", "vid", "name", "description"],
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        // (group, vid) and (group, name) are unique only within a VLAN group; groups are not
        // simulated, so ungrouped VLANs may repeat, as in NetBox.
        uniques: &[],
        q: &["name", "description"],
        read_only: false,
    },
    TypeDef {
        key: "interfaces",
        app: "virtualization",
        model: "virtualization.vminterface",
        class: "VMInterface",
        fields: &[
            f("virtual_machine", Kind::Fk(VM, OnDelete::Cascade)).req(),
            f("name", Kind::Str(64)).req(),
            f("enabled", Kind::Bool).def(Def::Bool(true)),
            f("mtu", Kind::Int(68)),
            f("primary_mac_address", Kind::Fk(MACADDR, OnDelete::SetNull)).since(4, 2),
            // 4.0-4.1: the interface's own MAC (MAC objects come with 4.2).
            f("mac_address", Kind::Str(17)).null().until(4, 2),
            DESCRIPTION,
            f("mode", Kind::Choice(IFACE_MODE)).null(),
            f("untagged_vlan", Kind::Fk(VLAN, OnDelete::SetNull)),
            f("vrf", Kind::Fk(VRF, OnDelete::SetNull)),
        ],
        brief: &[
            "id",
            "url",
            "display",
            "virtual_machine",
            "name",
            "description",
        ],
        since: (4, 0),
        order: Order::Name,
        tags: true,
        custom_fields: true,
        display: "name",
        uniques: &[Unique {
            fields: &["virtual_machine", "name"],
            ci: false,
            when_set: None,
            when_null: None,
            err: UniqueErr::All("Interface with this Virtual machine and Name already exists."),
        }],
        q: &["name", "description"],
        read_only: false,
    },
    TypeDef {
        key: "mac-addresses",
        app: "dcim",
        model: "dcim.macaddress",
        class: "MACAddress",
        fields: &[
            f("mac_address", Kind::Str(17)).req(),
            f("assigned_object_type", Kind::Plain(ASSIGNABLE)).null(),
            f("assigned_object_id", Kind::Int(0)),
            DESCRIPTION,
            COMMENTS,
        ],
        brief: &["id", "url", "display", "mac_address", "description"],
        since: (4, 2),
        order: Order::Field("mac_address"),
        tags: true,
        custom_fields: true,
        display: "mac_address",
        uniques: &[],
        q: &["mac_address", "description"],
        read_only: false,
    },
    TypeDef {
        key: "ip-addresses",
        app: "ipam",
        model: "ipam.ipaddress",
        class: "IPAddress",
        fields: &[
            f("address", Kind::Str(64)).req(),
            f("vrf", Kind::Fk(VRF, OnDelete::Protect)),
            f("tenant", Kind::Fk(TENANT, OnDelete::Protect)),
            f("status", Kind::Choice(IP_STATUS)).def(Def::Str("active")),
            f("role", Kind::Choice(IP_ROLE)).null(),
            f("assigned_object_type", Kind::Plain(ASSIGNABLE)).null(),
            f("assigned_object_id", Kind::Int(0)),
            f("dns_name", Kind::Str(255)),
            DESCRIPTION,
            COMMENTS,
        ],
        brief: &["id", "url", "display", "family", "address", "description"],
        since: (4, 0),
        order: Order::Field("address"),
        tags: true,
        custom_fields: true,
        display: "address",
        uniques: &[],
        q: &["address", "dns_name", "description"],
        read_only: false,
    },
];

/// The type served at `/api/{app}/{key}/` for this NetBox version.
pub(crate) fn find_type(app: &str, key: &str, version: Ver) -> Option<Ty> {
    TYPES
        .iter()
        .position(|t| t.app == app && t.key == key && version >= t.since)
}

/// The type with this `app.model` label.
pub(crate) fn type_by_model(model: &str) -> Option<Ty> {
    TYPES.iter().position(|t| t.model == model)
}

/// The type with this URL key (control API).
pub(crate) fn type_by_key(key: &str) -> Option<Ty> {
    TYPES.iter().position(|t| t.key == key)
}
