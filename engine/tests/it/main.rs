//! Integration tests of gonka-engine, one binary.

mod crypto_beacon;
mod crypto_selection;
mod crypto_votes;
mod proof_files;
