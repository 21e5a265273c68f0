//! End-to-end tests of the `gonka` binary: the exact CLI interfaces, exit
//! codes and messages a person or a script relies on.

mod cli;
mod store;
