//! Starting the simulators in-process: [`Simulators::start`] binds every server on
//! 127.0.0.1, makes the Proxmox certificates and tokens, and returns a [`SimHandle`] with
//! URLs, credentials and the [`Control`] API.

use crate::control::{self, Control};
use crate::inventory::{EndpointInventory, Inventory, InventorySpec, Task};
use crate::netbox::{self, NetboxSim, NetboxVersion, TokenRec};
use crate::pve::{self, GuestState, PveEndpoint, PveVersion};
use crate::rng::Rng;
use crate::serve;
use crate::service::{self, Profile, ServiceCtl, ServiceKind};
use crate::tls::{self, TlsError};
use axum::middleware::from_fn_with_state;
use axum_server::Handle;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// NetBox workers in the `realistic` profile: with ~75 ms per request this gives the
/// ~20-25 req/s a 2-core NetBox 4.7 serves (netbox-live.md 2.5).
pub const REALISTIC_NETBOX_WORKERS: usize = 2;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// What Proxmox holds.
    pub inventory: InventorySpec,
    /// Latency profile.
    pub profile: Profile,
    /// Proxmox version of every endpoint.
    pub pve_version: PveVersion,
    /// NetBox version.
    pub netbox_version: NetboxVersion,
    /// First Proxmox port (endpoint i gets `pve_port + i`); 0 = free ports.
    pub pve_port: u16,
    /// NetBox port; 0 = a free port.
    pub netbox_port: u16,
    /// Control API port; 0 = a free port.
    pub control_port: u16,
    /// Delay before a Proxmox 401 (real servers: 3 s).
    pub pve_auth_fail_delay: Duration,
    /// NetBox worker pool size; `None` = the profile's default (unbounded for `zero`).
    pub netbox_workers: Option<usize>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            inventory: InventorySpec::default(),
            profile: Profile::Zero,
            pve_version: PveVersion::default(),
            netbox_version: NetboxVersion::default(),
            pve_port: 0,
            netbox_port: 0,
            control_port: 0,
            pve_auth_fail_delay: Duration::ZERO,
            netbox_workers: None,
        }
    }
}

/// Errors while starting the simulators.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A port could not be bound.
    #[error("sim: binding {service} on 127.0.0.1:{port} failed: {source}")]
    Bind {
        /// Which server.
        service: String,
        /// Requested port.
        port: u16,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A simulated service's runtime could not start.
    #[error("sim: starting the {service} runtime failed: {source}")]
    Runtime {
        /// Which service.
        service: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The inventory has no Proxmox endpoint.
    #[error("sim: the inventory has no Proxmox endpoint (clusters + standalone must be >= 1)")]
    NoEndpoint,
}

/// Connection data of one Proxmox endpoint.
#[derive(Clone)]
pub struct PveEndpointInfo {
    /// Cluster name (or the standalone node's name).
    pub name: String,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// `USER@REALM!TOKENID=SECRET` for `Authorization: PVEAPIToken=`.
    pub token: String,
    /// SHA-256 of the leaf certificate's DER, colon hex.
    pub fingerprint: String,
    /// The endpoint's CA certificate (PEM), for clients that verify a chain.
    pub ca_pem: String,
    /// True for a standalone node.
    pub standalone: bool,
    /// Node names; the first is the one the URL talks to.
    pub nodes: Vec<String>,
}

impl std::fmt::Debug for PveEndpointInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PveEndpointInfo")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("fingerprint", &self.fingerprint)
            .field("standalone", &self.standalone)
            .field("nodes", &self.nodes)
            .finish()
    }
}

/// Running simulators. Dropping the handle stops the servers.
pub struct SimHandle {
    endpoints: Vec<PveEndpointInfo>,
    netbox_url: String,
    netbox_token: String,
    netbox_token_v1: String,
    netbox_token_readonly: String,
    control_url: String,
    control: Arc<Control>,
    handles: Vec<Handle>,
    /// Proxmox's and NetBox's threads; stopped after the servers (fields drop after `drop`).
    _runtimes: [serve::ServiceRuntime; 2],
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("endpoints", &self.endpoints)
            .field("netbox_url", &self.netbox_url)
            .field("control_url", &self.control_url)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The Proxmox endpoints (clusters first, then standalone nodes).
    pub fn pve_endpoints(&self) -> Vec<PveEndpointInfo> {
        self.endpoints.clone()
    }
    /// `http://127.0.0.1:PORT` (no trailing slash; the API is under `/api/`).
    pub fn netbox_url(&self) -> &str {
        &self.netbox_url
    }
    /// A read-write token: v2 (`nbt_…`) on NetBox >= 4.5, else v1.
    pub fn netbox_token(&self) -> &str {
        &self.netbox_token
    }
    /// A read-write v1 token (40 chars).
    pub fn netbox_token_v1(&self) -> &str {
        &self.netbox_token_v1
    }
    /// A read-only token (v2 on >= 4.5, else v1): writes get 403.
    pub fn netbox_token_readonly(&self) -> &str {
        &self.netbox_token_readonly
    }
    /// `http://127.0.0.1:PORT` of the control API.
    pub fn control_url(&self) -> &str {
        &self.control_url
    }
    /// The in-process control API.
    pub fn control(&self) -> &Control {
        &self.control
    }
    /// Shared handle to the control API (outlives borrows of the handle).
    pub fn control_arc(&self) -> Arc<Control> {
        self.control.clone()
    }
    /// Stops all servers (also done on drop).
    pub fn shutdown(&self) {
        for h in &self.handles {
            h.shutdown();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Entry point of the test kit.
pub struct Simulators;

impl Simulators {
    /// Generates the inventory from `cfg.inventory` and starts everything. Guests are
    /// converted to the simulator's compact form as they are generated.
    pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
        let mut guests: Vec<BTreeMap<u32, GuestState>> = Vec::new();
        let mut tasks: Vec<Vec<Task>> = Vec::new();
        let skeletons = Inventory::generate_streaming(&cfg.inventory, |e, g, t| {
            if guests.len() <= e {
                guests.resize_with(e + 1, BTreeMap::new);
                tasks.resize_with(e + 1, Vec::new);
            }
            guests[e].insert(g.vmid, GuestState::from_guest(g));
            tasks[e].extend(t);
        });
        guests.resize_with(skeletons.len(), BTreeMap::new);
        tasks.resize_with(skeletons.len(), Vec::new);
        let states = skeletons
            .into_iter()
            .zip(guests.into_iter().zip(tasks))
            .map(|(s, (g, t))| (s, g, t))
            .collect();
        Self::start_states(cfg, states).await
    }

    /// Starts the simulators serving a given inventory (`cfg.inventory` only supplies the seed).
    pub async fn start_with_inventory(
        cfg: SimConfig,
        inv: Inventory,
    ) -> Result<SimHandle, SimError> {
        let states = inv
            .endpoints
            .into_iter()
            .map(|mut e| {
                let g = std::mem::take(&mut e.guests)
                    .into_iter()
                    .map(|g| (g.vmid, GuestState::from_guest(g)))
                    .collect();
                let t = std::mem::take(&mut e.tasks);
                (e, g, t)
            })
            .collect();
        Self::start_states(cfg, states).await
    }

    async fn start_states(
        cfg: SimConfig,
        states: Vec<(EndpointInventory, BTreeMap<u32, GuestState>, Vec<Task>)>,
    ) -> Result<SimHandle, SimError> {
        if states.is_empty() {
            return Err(SimError::NoEndpoint);
        }
        let seed = cfg.inventory.seed;
        let pve_ctl = ServiceCtl::new(ServiceKind::Pve, cfg.profile, None);
        let nb_workers = cfg.netbox_workers.or(match cfg.profile {
            Profile::Zero => None,
            Profile::Realistic => Some(REALISTIC_NETBOX_WORKERS),
        });
        let nb_ctl = ServiceCtl::new(ServiceKind::Netbox, cfg.profile, nb_workers);
        let runtime = |name: &str| {
            serve::ServiceRuntime::new(name).map_err(|source| SimError::Runtime {
                service: name.to_string(),
                source,
            })
        };
        let pve_rt = runtime("sim-pve")?;
        let nb_rt = runtime("sim-netbox")?;
        let mut handles = Vec::new();
        let mut infos = Vec::new();
        let mut endpoints = Vec::new();
        let mut rng = Rng::new(seed ^ 0x5056_4520);
        for (i, (ep_inv, ep_guests, ep_tasks)) in states.into_iter().enumerate() {
            let port = if cfg.pve_port == 0 {
                0
            } else {
                cfg.pve_port.saturating_add(i as u16)
            };
            let (listener, addr) = serve::bind_loopback(port).map_err(|source| SimError::Bind {
                service: format!("pve endpoint {}", ep_inv.name),
                port,
                source,
            })?;
            let entry = ep_inv
                .nodes
                .first()
                .map(|n| n.name.clone())
                .unwrap_or_default();
            let cert = tls::make_endpoint_cert(&ep_inv.name, &entry)?;
            let secret = {
                let a = rng.next_u64();
                let b = rng.next_u64();
                format!(
                    "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xfff,
                    b >> 52,
                    b & 0xffff_ffff_ffff
                )
            };
            let name = ep_inv.name.clone();
            let standalone = ep_inv.standalone;
            let nodes: Vec<String> = ep_inv.nodes.iter().map(|n| n.name.clone()).collect();
            let ep = Arc::new(PveEndpoint::with_state(
                ep_inv,
                ep_guests,
                ep_tasks,
                cfg.pve_version,
                secret,
                cfg.pve_auth_fail_delay,
                cert.fingerprint.clone(),
            ));
            let router =
                pve::router(ep.clone()).layer(from_fn_with_state(pve_ctl.clone(), service::layer));
            let handle = Handle::new();
            serve::spawn_https(
                pve_rt.handle(),
                listener,
                router,
                cert.server_config.clone(),
                handle.clone(),
            );
            handles.push(handle);
            infos.push(PveEndpointInfo {
                name,
                url: format!("https://{addr}"),
                token: ep.token(),
                fingerprint: cert.fingerprint,
                ca_pem: cert.ca_pem,
                standalone,
                nodes,
            });
            endpoints.push(ep);
        }

        let (v2, v1, ro) = netbox::make_tokens(seed);
        let v2_ok = cfg.netbox_version >= NetboxVersion { major: 4, minor: 5 };
        let (rw_main, ro_main) = if v2_ok {
            (v2.clone(), ro.clone())
        } else {
            (
                v1.clone(),
                ro.replace("nbt_", "").replace('.', "")[..40].to_string(),
            )
        };
        let tokens = vec![
            TokenRec {
                plaintext: rw_main.clone(),
                write_enabled: true,
            },
            TokenRec {
                plaintext: v1.clone(),
                write_enabled: true,
            },
            TokenRec {
                plaintext: ro_main.clone(),
                write_enabled: false,
            },
        ];
        let nb = Arc::new(NetboxSim::new(cfg.netbox_version, tokens));
        let (nl, naddr) =
            serve::bind_loopback(cfg.netbox_port).map_err(|source| SimError::Bind {
                service: "netbox".into(),
                port: cfg.netbox_port,
                source,
            })?;
        let nb_router =
            netbox::router(nb.clone()).layer(from_fn_with_state(nb_ctl.clone(), service::layer));
        let nh = Handle::new();
        serve::spawn_http(nb_rt.handle(), nl, nb_router, nh.clone());
        handles.push(nh);
        let netbox_url = format!("http://{naddr}");

        let control = Arc::new(Control {
            pve: endpoints,
            netbox: nb,
            pve_ctl,
            netbox_ctl: nb_ctl,
            netbox_base: netbox_url.clone(),
            seed,
            pve_urls: infos.iter().map(|i| i.url.clone()).collect(),
            pve_ca_pems: infos.iter().map(|i| i.ca_pem.clone()).collect(),
        });
        let (cl, caddr) =
            serve::bind_loopback(cfg.control_port).map_err(|source| SimError::Bind {
                service: "control".into(),
                port: cfg.control_port,
                source,
            })?;
        let ch = Handle::new();
        // The control API answers the tests, on their own runtime.
        serve::spawn_http(
            &tokio::runtime::Handle::current(),
            cl,
            control::router(control.clone()),
            ch.clone(),
        );
        handles.push(ch);

        Ok(SimHandle {
            endpoints: infos,
            netbox_url,
            netbox_token: rw_main,
            netbox_token_v1: v1,
            netbox_token_readonly: ro_main,
            control_url: format!("http://{caddr}"),
            control,
            handles,
            _runtimes: [pve_rt, nb_rt],
        })
    }
}
