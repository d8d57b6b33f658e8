//! The NetBox snapshot's kinds, for the children workload's per-kind page figures (the workload
//! itself is the test kit's `start_children_workload`).

/// The kinds the NetBox snapshot reads: (name in the figures, simulator type key, listing path
/// as the simulator counts it).
pub const SNAPSHOT_KINDS: [(&str, &str, &str); 6] = [
    (
        "vms",
        "virtual-machines",
        "GET /api/virtualization/virtual-machines/",
    ),
    (
        "interfaces",
        "interfaces",
        "GET /api/virtualization/interfaces/",
    ),
    (
        "mac_addresses",
        "mac-addresses",
        "GET /api/dcim/mac-addresses/",
    ),
    (
        "ip_addresses",
        "ip-addresses",
        "GET /api/ipam/ip-addresses/",
    ),
    (
        "virtual_disks",
        "virtual-disks",
        "GET /api/virtualization/virtual-disks/",
    ),
    ("vlans", "vlans", "GET /api/ipam/vlans/"),
];
