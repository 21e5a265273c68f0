//! `gonka`: the offline command line of the Gonka host — keys, Sprint mining,
//! proof verification and benchmarks.
//!
//! Flags are parsed by clap into [`Cli`], turned into checked values (parsed
//! seeds, keys, configs) by the small functions of [`args`], and each command
//! lives in its own module.

mod args;
mod bench;
mod demo;
mod dists;
mod genesis;
mod infer;
mod inspect;
mod keygen;
mod sim;
mod sprint;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The offline CLI of the Gonka host.
#[derive(Debug, Parser)]
#[command(name = "gonka", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a BLS12-381 host key (mode 0600) and prints its public key.
    Keygen {
        /// Where to write the key; never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// The Sprint PoW function on its own.
    Pow {
        #[command(subcommand)]
        command: PowCommand,
    },
    /// Mines a Sprint and writes the signed proof batch.
    Sprint(sprint::SprintArgs),
    /// Verifies a proof file offline (format, claims, signature, recomputed
    /// sample), or a stored epoch's Sprint against the chain's verdicts and weights.
    Verify(verify::VerifyArgs),
    /// The local demo: a key, a short Sprint on `small`, and its verification.
    Demo(demo::DemoArgs),
    /// Simulates a whole network with adversaries, deterministically under a seed.
    Sim(sim::SimArgs),
    /// Writes a genesis file (hosts, keys, weights, parameters) for a simulated network.
    Genesis(genesis::GenesisArgs),
    /// Reads a host's chain store: heights, hosts, an epoch's Sprint, a task, a block.
    Inspect(inspect::InspectArgs),
    /// The inference engine on its own: a chat, its benchmark, its validation study.
    Infer {
        #[command(subcommand)]
        command: infer::InferCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PowCommand {
    /// Prints `nonce,dist` CSV for a range of nonces (f32 reference numerics).
    Dists(dists::DistsArgs),
    /// Measures nonces/s and GFLOP/s against the peak GEMM rate of this machine.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out } => keygen::run(&out),
        Command::Pow { command: PowCommand::Dists(a) } => dists::run(&a),
        Command::Pow { command: PowCommand::Bench(a) } => bench::run(&a),
        Command::Sprint(a) => sprint::run(&a),
        Command::Verify(a) => verify::run(&a),
        Command::Demo(a) => demo::run(&a),
        Command::Sim(a) => sim::run_sim(&a),
        Command::Genesis(a) => genesis::run(&a),
        Command::Inspect(a) => inspect::run(&a),
        Command::Infer { command } => infer::run(&command).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
