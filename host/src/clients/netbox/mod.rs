//! NetBox API client: `Token`/`Bearer` authentication told from the token's form, version and
//! capability detection from `/api/status/`, readable errors from every NetBox error shape,
//! paginated listing with parallel pages, and single and bulk writes on any endpoint.
//!
//! Edges: knows nothing of Proxmox or the rules; objects are raw JSON. Retries and TLS come from
//! [`crate::clients::http`]; a POST is never retried blindly (see [`NetboxError::is_ambiguous`]).

mod client;
mod error;
mod id_list;
mod row_order;
mod version;

pub use client::{
    ListRow, Listed, NetboxClient, Object, PAGE_PARALLELISM, PAGE_SIZE, Page, endpoint_path,
};
pub use error::{ErrorBody, ItemError, NetboxError, PERMISSION_DENIED_DETAIL};
pub use version::{
    Capabilities, MAX_TESTED, MIN_SUPPORTED, NetboxStatus, NetboxVersion, TokenKind,
    V2_TOKEN_PREFIX,
};
