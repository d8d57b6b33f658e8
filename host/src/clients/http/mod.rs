//! Shared HTTP plumbing of the Proxmox and NetBox clients: TLS trust (CA, SHA-256 pin,
//! insecure), retries with backoff that never repeat an ambiguous POST, request counters for the
//! run report, and the [`Secret`] type that keeps tokens out of every printout.
//!
//! Knows nothing of either API's meaning: it moves bytes and classifies transport failures.

mod client;
mod message;
mod retry;
mod secret;
mod tls;

pub use client::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, HttpClient, HttpError, HttpErrorKind,
    HttpSettings, RawResponse, Request, RequestCount, RequestCounters, error_chain,
};
pub use message::{MAX_MESSAGE_CHARS, clip_message};
pub use retry::{
    DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF, DEFAULT_RETRY_BUDGET,
    RetryPolicy, RetryableStatus, default_retryable_status, retry_after,
};
pub use secret::Secret;
pub use tls::{Fingerprint, PinMismatch, TlsError, TlsMode, client_config};
