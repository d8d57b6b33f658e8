//! The Proxmox side of reconcile: each guest that was listed, with what the rules made of it.

use guest_default::model::{Desired, DesiredVm, GuestKind, RuleError};

/// What the rules' `normalize-desired` returned for one guest (or the batch trap that failed it).
#[derive(Debug, Clone, PartialEq)]
pub enum RulesResult {
    /// Reconcile to this VM (boxed: a desired VM is large, a skip is a string).
    Vm(Box<DesiredVm>),
    /// The rules leave the guest alone, with the reason.
    Skip(String),
    /// A rule error or a batch trap, with the message.
    Error(String),
}

impl From<Result<Desired, RuleError>> for RulesResult {
    fn from(result: Result<Desired, RuleError>) -> Self {
        match result {
            Ok(Desired::Vm(vm)) => RulesResult::Vm(Box::new(vm)),
            Ok(Desired::Skip(reason)) => RulesResult::Skip(reason),
            Err(err) => RulesResult::Error(format!("rule error {err}")),
        }
    }
}

/// One guest listed by Proxmox, placed in its NetBox cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedGuest {
    /// Proxmox cluster name (or standalone node name).
    pub cluster: String,
    /// The NetBox cluster it maps to.
    pub cluster_id: u64,
    pub vmid: u32,
    pub kind: GuestKind,
    pub node: String,
    /// Name of the resource row; absent for `unknown` rows of an offline node.
    pub name: Option<String>,
    pub rules: RulesResult,
}

impl ObservedGuest {
    /// `cluster/node/vmid`, how errors name the guest.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}", self.cluster, self.node, self.vmid)
    }
}
