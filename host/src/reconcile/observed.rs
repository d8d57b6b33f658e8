//! The Proxmox side of reconcile: each guest that was listed, and what the rules made of it.

use guest_default::model::{GuestKind, Reconciled, ReconciledVm, RuleError};

/// What the rules' `reconcile` returned for one guest (or the batch trap that failed it).
#[derive(Debug, Clone, PartialEq)]
pub enum RulesResult {
    /// The desired name, the objects it needs and the changes against the matched record.
    Vm(ReconciledVm),
    /// The rules leave the guest alone, with the reason.
    Skip(String),
    /// A rule error or a batch trap, with the message.
    Error(String),
}

impl From<Result<Reconciled, RuleError>> for RulesResult {
    fn from(result: Result<Reconciled, RuleError>) -> Self {
        match result {
            Ok(Reconciled::Vm(vm)) => RulesResult::Vm(vm),
            Ok(Reconciled::Skip(reason)) => RulesResult::Skip(reason),
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
    /// The Proxmox endpoint it was read from (its index in the configuration).
    pub endpoint: usize,
}

impl ObservedGuest {
    /// `cluster/node/vmid`, how errors name the guest.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}", self.cluster, self.node, self.vmid)
    }
}
