//! The Proxmox side of reconcile: each guest that was listed, and what the rules made of it.

use std::collections::HashSet;
use std::sync::Arc;

use guest_default::model::{GuestKind, ObjectSpec, Reconciled, ReconciledVm, RuleError};

use super::changes::Changes;
use super::child_operations::ChildOperations;

/// What the rules' `reconcile` returned for one guest (or the batch trap that failed it).
#[derive(Debug, Clone, PartialEq)]
pub enum RulesResult {
    /// The desired name, the objects it needs and the changes against the matched record.
    Vm(Answer),
    /// The rules leave the guest alone, with the reason.
    Skip(String),
    /// A rule error or a batch trap, with the message.
    Error(String),
}

impl From<Result<Reconciled, RuleError>> for RulesResult {
    fn from(result: Result<Reconciled, RuleError>) -> Self {
        match result {
            Ok(Reconciled::Vm(vm)) => RulesResult::Vm(vm.into()),
            Ok(Reconciled::Skip(reason)) => RulesResult::Skip(reason),
            Err(err) => RulesResult::Error(format!("rule error {err}")),
        }
    }
}

/// The rules' answer for one guest, as the plan keeps it (changes packed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The desired name when the rules set one.
    pub name: Option<String>,
    /// Shared: most guests need the same few objects (see [`NeedsInterner`]).
    pub needs: Vec<Arc<ObjectSpec>>,
    pub changes: Changes,
    /// The child changes of a WIT 0.3 module (empty before 0.3). Without `sync.children` the
    /// plan reports them per VM as not applied (see `classify::hold_back_children`).
    pub children: ChildOperations,
    /// Set when the child changes were held back as the answer arrived ([`settle_answer`]):
    /// what the plan reports as not applied.
    ///
    /// [`settle_answer`]: super::classify::settle_answer
    pub children_not_applied: Option<Arc<str>>,
}

impl From<ReconciledVm> for Answer {
    fn from(vm: ReconciledVm) -> Self {
        Answer {
            name: vm.name,
            needs: vm.needs.into_iter().map(Arc::new).collect(),
            changes: Changes::from(vm.changes),
            children: ChildOperations::from(vm.children),
            children_not_applied: None,
        }
    }
}

/// One copy of each needed object for a whole run. Why: nearly every guest needs the same
/// platform, VM type and tag; a copy each was ~0.5 KB per guest held until the dispatch.
#[derive(Debug, Default)]
pub struct NeedsInterner {
    seen: HashSet<Arc<ObjectSpec>>,
}

impl NeedsInterner {
    /// Points the answer's needs at the run's one copy of each.
    pub fn intern(&mut self, result: &mut RulesResult) {
        let RulesResult::Vm(answer) = result else {
            return;
        };
        for need in &mut answer.needs {
            match self.seen.get(need.as_ref()) {
                Some(shared) => *need = Arc::clone(shared),
                None => {
                    self.seen.insert(Arc::clone(need));
                }
            }
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
