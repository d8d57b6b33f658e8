//! The canonical ABI's layout of WIT 0.4's records as the hand-written `reconcile` reads and
//! writes them: the fields' sizes and alignments, [`layout`] that places a record's fields, each
//! record's offset table, and the answers' block header.

/// The size of a pointer (and of a length) in the module's memory: 4 in `wasm32`.
pub(super) const P: usize = size_of::<usize>();

/// A field's (size, alignment) in the canonical ABI.
type Abi = (usize, usize);

const U8: Abi = (1, 1);
const U32: Abi = (4, 4);
const U64: Abi = (8, 8);
/// A `string` or a `list<T>`: its pointer and length.
const STR: Abi = (2 * P, P);
/// `option<T>` of a 4-byte `T` (`text-index`).
const OPT_U32: Abi = (8, 4);
/// `option<T>` of an 8-byte `T` (`u64`, `f64`).
const OPT_U64: Abi = (16, 8);
/// `option<string>`: the case byte, the string at `P`.
const OPT_STR: Abi = (3 * P, P);
/// `network-source`: the case byte, the payload at `P` (a string, or `network-unknown`: the
/// reason byte, the detail at `P`).
const NETWORK: Abi = (4 * P, P);
/// `child-op`: the case byte, the id at 8.
const CHILD_OP: Abi = (16, 8);

/// Where each field of a record sits, from the fields' (size, align) in declared order followed
/// by a `(0, 1)` placeholder, whose slot gets the record's size.
const fn layout<const N: usize>(fields: [Abi; N]) -> [usize; N] {
    let mut at = [0; N];
    let mut off = 0usize;
    let mut align = 1usize;
    let mut i = 0;
    while i < N {
        let a = fields[i].1;
        if a > align {
            align = a;
        }
        off = off.next_multiple_of(a);
        at[i] = off;
        off += fields[i].0;
        i += 1;
    }
    at[N - 1] = off.next_multiple_of(align);
    at
}

// The inputs.

/// `known-object`: kind, key, id, name (and its size).
pub(super) const KNOWN: [usize; 5] = layout([STR, STR, U64, STR, (0, 1)]);
/// `field-policy`: field, ownership.
pub(super) const POLICY: [usize; 3] = layout([STR, U8, (0, 1)]);
/// `tuple<string, json>`.
pub(super) const PAIR: [usize; 3] = layout([STR, STR, (0, 1)]);
/// `guest-input`'s fields.
pub(super) const G: [usize; 16] = layout([
    U32,     // cluster
    U32,     // vmid
    U8,      // kind
    U32,     // node
    OPT_STR, // name
    U32,     // status
    U8,      // template
    OPT_U64, // maxcpu
    OPT_U64, // maxmem
    OPT_U64, // maxdisk
    OPT_U32, // tags
    OPT_U32, // pool
    STR,     // config
    U8,      // config-read
    NETWORK, // network
    (0, 1),
]);
/// `netbox-record`'s fields.
pub(super) const R: [usize; 21] = layout([
    U64,     // id
    STR,     // name
    U32,     // status
    OPT_U32, // cluster
    OPT_U32, // site
    OPT_U32, // device
    OPT_U32, // role
    OPT_U32, // vm-type
    OPT_U32, // platform
    OPT_U32, // tenant
    OPT_U64, // vcpus
    OPT_U64, // memory
    OPT_U64, // disk
    OPT_STR, // description
    OPT_STR, // comments
    OPT_STR, // serial
    OPT_U32, // start-on-boot
    STR,     // tags
    STR,     // custom-fields
    OPT_STR, // children
    (0, 1),
]);
/// `option<netbox-record>`: the case byte, the record at its alignment (8).
const OPT_RECORD: Abi = (8 + R[20], 8);
/// `reconcile-input`: guest, current.
pub(super) const I: [usize; 3] = layout([(G[15], 8), OPT_RECORD, (0, 1)]);

// The answers.

/// `field-name`: the case byte, the name at `P` for `custom-field` and `other`.
const FIELD_NAME: Abi = (3 * P, P);
/// `field-change`: field, old, new.
pub(super) const FC: [usize; 4] = layout([FIELD_NAME, OPT_STR, STR, (0, 1)]);
/// `object-spec`: kind, key, name, attrs.
pub(super) const SPEC: [usize; 5] = layout([STR, STR, STR, STR, (0, 1)]);
/// `child-change`: kind, key, parent, op, changes.
pub(super) const CC: [usize; 6] = layout([U8, STR, OPT_STR, CHILD_OP, STR, (0, 1)]);
/// `reconciled-vm`: name, needs, changes, children.
pub(super) const VM: [usize; 5] = layout([OPT_STR, STR, STR, STR, (0, 1)]);
/// `reconciled`: the case byte, `reconciled-vm` or the skip's reason at `P`.
const RECONCILED: Abi = (P + VM[4], P);
/// `rule-error`: code, message.
pub(super) const ERR: [usize; 3] = layout([STR, STR, (0, 1)]);
/// `result<reconciled, rule-error>`: the case byte, the payload at `P`.
pub(super) const RESULT: usize = P + RECONCILED.0;

/// `field-name`'s case of a custom field (`custom_fields.<name>`), then of any other name; the
/// cases before are the `FIELD_NAMES` the tests hold.
pub(super) const CUSTOM_FIELD: u8 = 28;
pub(super) const OTHER: u8 = 29;
/// `field-name`'s cases without a payload, in the order 0.4 declares them (their numbers):
/// what [`field_case`](super::lower::field_case) matches, checked by the tests.
#[cfg(test)]
pub(super) const FIELD_NAMES: [&str; CUSTOM_FIELD as usize] = [
    "name",
    "status",
    "site",
    "device",
    "role",
    "virtual_machine_type",
    "platform",
    "tenant",
    "vcpus",
    "memory",
    "disk",
    "description",
    "comments",
    "serial",
    "start_on_boot",
    "tags",
    "primary_ip4",
    "primary_ip6",
    "enabled",
    "mtu",
    "mode",
    "untagged_vlan",
    "primary_mac_address",
    "mac_address",
    "interface",
    "address",
    "vrf",
    "size",
];
/// The prefix of a custom field's change (`custom_fields.proxmox_vm_id`).
pub(super) const CUSTOM_FIELDS: &str = "custom_fields.";

/// The answers' block begins with the return area (the list's pointer and length), then what
/// the post-return needs to free the model's answers (their vector's pointer, capacity and
/// length, the block's size, the number of blocks the answers own and the largest's size), then
/// the results at `HEAD`.
pub(super) const HEAD: usize = 8 * P;
pub(super) const RET_AT: usize = 0;
pub(super) const KEEP_AT: usize = 2 * P;
pub(super) const TALLY_AT: usize = 6 * P;
pub(super) const BLOCK_ALIGN: usize = 8;
