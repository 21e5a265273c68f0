//! Money on the chain: accounts, escrow, the training fund, the reserve, the
//! decaying subsidy, each host's earnings of the epoch and the rules that
//! release or forfeit them, reputation, and the validation rate it buys.
//!
//! ```text
//!  supply = Σ balances + escrow + Σ pending earnings + training fund + reserve
//!         = genesis supply + Σ subsidy minted                (checked: Ledger::check)
//! ```
//!
//! Every amount is an integer of base units ([`crate::params::Amount`]);
//! every rate a fixed-point [`crate::crypto::selection::Probability`].

pub mod components;
pub mod plugin;
pub mod rate;
pub mod systems;

pub use components::*;
