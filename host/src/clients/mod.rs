//! The two API clients, over one HTTP layer: [`proxmox`] reads Proxmox VE, [`netbox`] reads and
//! writes NetBox; [`http`] holds what both share (TLS, retries, secrets, request counters).

pub mod http;
pub mod netbox;
pub mod proxmox;
