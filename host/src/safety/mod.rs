//! What keeps two runs from writing at once: [`run_lock`], the local lock in the state dir, and
//! [`lease`], the lease a writing run holds in NetBox itself (for runs from two machines).

pub mod lease;
pub mod run_lock;
