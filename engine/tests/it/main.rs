//! Integration tests of gonka-engine, one binary.

mod proof_files;
