//! Integration tests of gonka-engine, one binary.

mod chain;
mod crypto_beacon;
mod crypto_selection;
mod crypto_votes;
mod proof_files;
mod sim;
