//! `gonka-node`: the host a person runs.
//!
//! `run --config node.toml` joins the network and decides blocks, printing
//! one status line per block; `localnet --hosts 4` writes a local network
//! and runs its hosts as separate processes on loopback.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

use anyhow::Context;
use clap::{Parser, Subcommand};
use gonka_engine::node::config::{ModelConfig, NodeConfig, SMOLLM2_NAME, Topology, write_localnet};
use gonka_engine::node::core::CommitInfo;
use gonka_engine::node::runtime::Node;

#[derive(Debug, Parser)]
#[command(name = "gonka-node", version, about = "The Gonka host: network, consensus, chain store, HTTP API.")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs one host.
    Run {
        /// Its configuration.
        #[arg(long)]
        config: PathBuf,
        /// Stop when standard input closes (how `localnet` stops its hosts).
        #[arg(long, hide = true)]
        stop_on_stdin_eof: bool,
    },
    /// Writes a local network and runs its hosts as processes on loopback.
    Localnet {
        /// Hosts.
        #[arg(long, default_value_t = 4)]
        hosts: usize,
        /// Directory for keys, genesis, configs and stores (default: a new one under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// First peer port; API ports start 1000 higher.
        #[arg(long, default_value_t = 27600)]
        base_port: u16,
        /// Stop after this many blocks (default: run until Ctrl-C).
        #[arg(long)]
        blocks: Option<u64>,
        /// The model the hosts serve: `smollm2` (the GGUF file `tools/fetch-model.sh`
        /// fetches) or `tiny` (a seed-generated test model, no file needed).
        #[arg(long, default_value = "smollm2")]
        model: String,
        /// Which hosts dial which: `mesh` (every pair) or `ring` (each its
        /// successor; the rest by relay and by dialing announced addresses).
        #[arg(long, default_value = "mesh")]
        topology: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run { config, stop_on_stdin_eof } => run(&config, stop_on_stdin_eof),
        Cmd::Localnet { hosts, dir, base_port, blocks, model, topology } => {
            localnet(hosts, dir, base_port, blocks, &model, &topology)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One line per block, for people and for `localnet`.
fn status_line(c: &CommitInfo) -> String {
    let weights: Vec<String> = c.weights.iter().map(u64::to_string).collect();
    format!(
        "block {:>5}  epoch {:>3}  {:<10}  round {}  txs {:>4} ({} failed)  weights [{}]  tasks ended {}  root {}",
        c.height,
        c.epoch,
        c.phase,
        c.round,
        c.transactions.0,
        c.transactions.1,
        weights.join(","),
        c.tasks_ended,
        &hex::encode(c.state_root)[..12]
    )
}

fn run(config: &Path, stop_on_stdin_eof: bool) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = NodeConfig::read(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        // A closed standard output (the parent went away) is no reason to stop.
        let node = Node::start(&config, |c| {
            let _ = writeln!(std::io::stdout().lock(), "{}", status_line(c));
        })
        .await?;
        tracing::info!(listen = %config.listen, api = %config.api, "host running");
        let stdin_closed = async {
            if stop_on_stdin_eof {
                let _ = tokio::task::spawn_blocking(|| {
                    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
                })
                .await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
            _ = term.recv() => tracing::info!("terminated"),
            _ = stdin_closed => tracing::info!("parent gone"),
        }
        node.stop().await?;
        anyhow::Ok(())
    })
}

fn localnet(
    hosts: usize,
    dir: Option<PathBuf>,
    base_port: u16,
    blocks: Option<u64>,
    model: &str,
    topology: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(hosts >= 1, "at least one host");
    let topology = match topology {
        "mesh" => Topology::Mesh,
        "ring" => Topology::Ring,
        other => anyhow::bail!("unknown topology {other:?}: `mesh` or `ring`"),
    };
    let model = match model {
        "smollm2" => {
            let path = gonka_kernels::llm::gguf::default_model_path();
            anyhow::ensure!(
                path.exists(),
                "model file {} is missing: run tools/fetch-model.sh",
                path.display()
            );
            ModelConfig { name: SMOLLM2_NAME.into(), gguf: Some(path), tiny_seed: None }
        }
        "tiny" => ModelConfig { name: "tiny".into(), gguf: None, tiny_seed: Some(0) },
        other => anyhow::bail!("unknown model {other:?}: `smollm2` or `tiny`"),
    };
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("gonka-localnet-{}", std::process::id())),
    };
    anyhow::ensure!(!dir.join("genesis.bin").exists(), "{} already holds a network", dir.display());
    let configs = write_localnet(&dir, hosts, base_port, &model, topology)?;
    println!(
        "local network of {hosts} hosts in {} (peers from port {base_port}, APIs from {})",
        dir.display(),
        base_port + 1000
    );
    let exe = std::env::current_exe().context("finding gonka-node")?;
    let mut children: Vec<Child> = Vec::with_capacity(hosts);
    for (i, config) in configs.iter().enumerate() {
        let host_dir = config.parent().unwrap_or(Path::new("."));
        let log = std::fs::File::create(host_dir.join("node.log")).context("creating a log file")?;
        let stdout = if i == 0 { Stdio::piped() } else { Stdio::from(log.try_clone().context("log file")?) };
        let child = Command::new(&exe)
            .args(["run", "--stop-on-stdin-eof", "--config"])
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting host {i}"))?;
        children.push(child);
    }
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = std::sync::Arc::clone(&interrupted);
        ctrlc_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))?;
    }
    let out = children[0].stdout.take().context("host 0's output")?;
    let mut last = None;
    // When host 0 committed each block: the intervals are the time to finality of the next.
    let mut commits: Vec<std::time::Instant> = Vec::new();
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        println!("{line}");
        if let Some(h) = line.split_whitespace().nth(1).and_then(|h| h.parse::<u64>().ok()) {
            last = Some(h);
            commits.push(std::time::Instant::now());
        }
        if interrupted.load(std::sync::atomic::Ordering::SeqCst)
            || blocks.is_some_and(|b| last.is_some_and(|h| h + 1 >= b))
        {
            break;
        }
    }
    // Closing their stdin stops the hosts cleanly.
    for c in &mut children {
        drop(c.stdin.take());
    }
    let mut failed = 0;
    for (i, mut c) in children.into_iter().enumerate() {
        let status = c.wait().with_context(|| format!("waiting for host {i}"))?;
        if !status.success() && !interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!(
                "host {i} exited with {status}; see {}",
                configs[i].with_file_name("node.log").display()
            );
            failed += 1;
        }
    }
    println!(
        "stopped {hosts} hosts after {} blocks; stores, logs and configs are in {}",
        last.map_or(0, |h| h + 1),
        dir.display()
    );
    if commits.len() > 2 {
        let mut gaps: Vec<f64> = commits.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1e3).collect();
        gaps.sort_by(f64::total_cmp);
        let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q).round() as usize];
        let span = (commits[commits.len() - 1] - commits[0]).as_secs_f64();
        println!(
            "block time at host 0 over {} blocks: median {:.0} ms, p90 {:.0} ms, max {:.0} ms ({:.1} blocks/s)",
            gaps.len(),
            at(0.5),
            at(0.9),
            at(1.0),
            gaps.len() as f64 / span
        );
    }
    anyhow::ensure!(failed == 0, "{failed} hosts failed");
    Ok(())
}

/// Ctrl-C sets a flag: the hosts see it too (same process group) and stop themselves.
fn ctrlc_handler(f: impl Fn() + Send + 'static) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("signal runtime")?;
    std::thread::spawn(move || {
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                f();
            }
        })
    });
    Ok(())
}
