//! Errors of the rules runtime, in two layers (Zed's pattern): a per-VM `RuleError` is a value the
//! module returns; a `RulesError` is the host's, for a module that cannot be loaded or a batch call
//! that trapped or hit a limit. Every message names the module (name and version, or the file)
//! and, for a call, the function and the batch.

use std::fmt;

use super::limits::LimitHit;

/// Which module an error concerns: its file (or "embedded default") and, once read, its
/// name and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleLabel {
    /// "embedded default" or the file path.
    pub source: String,
    /// `name version`, once `info` answered.
    pub name: Option<String>,
}

impl fmt::Display for ModuleLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "rules module `{n}` ({})", self.source),
            None => write!(f, "rules module {}", self.source),
        }
    }
}

/// The batch a call was made for: its index (set by the caller that split the work) and the
/// identities of its first and last item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchRef {
    /// Index of the batch in the caller's sequence, when the caller said.
    pub index: Option<usize>,
    /// Number of items.
    pub items: usize,
    /// Identity of the first item (`cluster/node/vmid`, `netbox VM id N`, `pair N`).
    pub first: Option<String>,
    /// Identity of the last item.
    pub last: Option<String>,
}

impl fmt::Display for BatchRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "batch {i}")?,
            None => write!(f, "batch")?,
        }
        write!(f, " ({} items", self.items)?;
        match (&self.first, &self.last) {
            (Some(a), Some(b)) if a != b => write!(f, ", {a} .. {b}")?,
            (Some(a), _) => write!(f, ", {a}")?,
            _ => {}
        }
        write!(f, ")")
    }
}

/// An error of the rules runtime. Labels are boxed to keep `Result<_, RulesError>` small.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The engine could not be set up.
    #[error("rules runtime: cannot create the wasmtime engine: {0}")]
    Engine(String),

    /// The module file could not be read.
    #[error("rules module {path}: cannot read the file")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a WebAssembly component.
    #[error("{module}: not a WebAssembly component: {reason}")]
    NotComponent {
        module: Box<ModuleLabel>,
        reason: String,
    },

    /// The component does not implement a rules world this host supports.
    #[error("{module}: {found}; this host supports {supported}")]
    UnsupportedWorld {
        module: Box<ModuleLabel>,
        /// What the module implements, e.g. "it implements pve2netbox:rules@0.2.0".
        found: String,
        /// The supported versions, e.g. "pve2netbox:rules@0.1.x".
        supported: String,
    },

    /// The component imports a capability rule modules may not have.
    #[error(
        "{module}: imports `{import}` ({capability}); rule modules are pure and may only import {allowed}"
    )]
    ForbiddenImport {
        module: Box<ModuleLabel>,
        import: String,
        capability: String,
        allowed: String,
    },

    /// Compilation or linking failed.
    #[error("{module}: {phase} failed: {message}")]
    Load {
        module: Box<ModuleLabel>,
        /// `compile`, `link`, `instantiate`, `info`.
        phase: &'static str,
        message: String,
    },

    /// A batch call hit a limit; the batch has no results.
    #[error("{module}: {call} of {batch} stopped: exceeded the {limit}")]
    Limit {
        module: Box<ModuleLabel>,
        call: &'static str,
        batch: Box<BatchRef>,
        limit: LimitHit,
    },

    /// A batch call trapped (panic, `unreachable`, stack overflow, ...); the batch has no results.
    #[error("{module}: {call} of {batch} trapped: {message}{}", stderr_suffix(.guest_stderr))]
    Trap {
        module: Box<ModuleLabel>,
        call: &'static str,
        batch: Box<BatchRef>,
        message: String,
        /// The end of what the module wrote to stderr (a panic message), if anything.
        guest_stderr: String,
    },

    /// The module broke the contract (e.g. returned a different number of results).
    #[error("{module}: {call} of {batch} broke the contract: {message}")]
    Contract {
        module: Box<ModuleLabel>,
        call: &'static str,
        batch: Box<BatchRef>,
        message: String,
    },
}

fn stderr_suffix(s: &str) -> String {
    if s.trim().is_empty() {
        String::new()
    } else {
        format!("; module stderr: {}", s.trim())
    }
}

impl RulesError {
    /// Sets the batch index of a call error (the caller that split the work knows it).
    pub fn in_batch(mut self, index: usize) -> Self {
        match &mut self {
            RulesError::Limit { batch, .. }
            | RulesError::Trap { batch, .. }
            | RulesError::Contract { batch, .. } => batch.index = Some(index),
            _ => {}
        }
        self
    }

    /// The limit that stopped the call, if a limit did.
    pub fn limit(&self) -> Option<&LimitHit> {
        match self {
            RulesError::Limit { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// The batch of a call error.
    pub fn batch(&self) -> Option<&BatchRef> {
        match self {
            RulesError::Limit { batch, .. }
            | RulesError::Trap { batch, .. }
            | RulesError::Contract { batch, .. } => Some(batch),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_module_call_batch_and_limit() {
        let e = RulesError::Limit {
            module: Box::new(ModuleLabel {
                source: "site.wasm".into(),
                name: Some("site-rules 1.2.0".into()),
            }),
            call: "normalize-desired",
            batch: Box::new(BatchRef {
                index: None,
                items: 2,
                first: Some("pve/n1/100".into()),
                last: Some("pve/n1/101".into()),
            }),
            limit: LimitHit::Deadline(std::time::Duration::from_millis(50)),
        }
        .in_batch(3);
        assert_eq!(
            e.to_string(),
            "rules module `site-rules 1.2.0` (site.wasm): normalize-desired of batch 3 \
             (2 items, pve/n1/100 .. pve/n1/101) stopped: exceeded the wall-clock deadline (50 ms)"
        );
    }
}
