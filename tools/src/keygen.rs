//! `gonka keygen`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use gonka_engine::crypto::HostKey;

pub fn run(out: &Path) -> anyhow::Result<ExitCode> {
    let key = HostKey::generate().context("generating a key")?;
    key.save(out).context("writing the key")?;
    println!("{}", hex::encode(key.public_key()));
    Ok(ExitCode::SUCCESS)
}
