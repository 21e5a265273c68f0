//! Inference tasks on the chain: requests with escrow, routing through a
//! random intermediary to an executor drawn by weight, finishes, the
//! auditable spot checks, disputes decided by re-verification of more than
//! half of the weight, user reports, hanging-request expiry, settlement and
//! dummy requests.
//!
//! ```text
//!  request ─► escrow max_cost, draw intermediary + executor ─► Requested ─(Y blocks)─► expired, refund
//!                                                                  │ finish
//!                                                                  ▼
//!   Finished (p from executor reputation) ─ checks by selected hosts, W blocks ─► settle: pay, refund rest
//!        │ failed check or user report
//!        ▼
//!   Disputed ─ every voting host re-verifies ─► > 1/2 fraud: refund, bounty, fraud count
//!                                               otherwise: settle as above
//! ```

pub mod components;
pub mod dummy;
pub mod messages;
pub mod plugin;
pub mod routing;
pub mod systems;

pub use components::*;
pub use messages::*;
