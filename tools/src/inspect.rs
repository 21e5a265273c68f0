//! `gonka inspect`: a host's chain store, read in place. The summary and
//! the epoch view read the archived values straight from the memory map
//! (validated, never deserialised); a task and a block are decoded whole.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use gonka_engine::chain::snapshot::ArchivedStateSnapshot;
use gonka_engine::store::ChainStore;
use gonka_engine::store::tables::*;
use gonka_storage::{ReadTxn, keys};

use crate::args;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The chain store directory (a node's data directory holds it).
    #[arg(long)]
    db: PathBuf,
    /// Show this epoch's Sprint, proof batches and validation reports.
    #[arg(long)]
    epoch: Option<u64>,
    /// Show this task (its id, 64 hex digits).
    #[arg(long)]
    task: Option<String>,
    /// Show this block's header and transactions.
    #[arg(long)]
    block: Option<u64>,
}

pub fn run(a: &InspectArgs) -> anyhow::Result<ExitCode> {
    let store =
        ChainStore::open_read_only(&a.db).with_context(|| format!("opening the store {}", a.db.display()))?;
    let txn = store.read()?;
    if let Some(epoch) = a.epoch {
        epoch_view(&txn, epoch)?;
    } else if let Some(task) = &a.task {
        task_view(&txn, &args::hex32(task)?)?;
    } else if let Some(height) = a.block {
        block_view(&store, &txn, height)?;
    } else {
        summary(&store, &txn)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(store: &ChainStore, txn: &ReadTxn<'_>) -> anyhow::Result<()> {
    println!("store {} (schema {SCHEMA}, format {FORMAT_VERSION})", store.store().path().display());
    for t in store.store().stats(txn)? {
        println!("  {:<14} {:>9} entries {:>12} bytes", t.name, t.entries, t.bytes);
    }
    let first = BLOCKS.first(txn)?.and_then(|(k, _)| keys::read_u64(k));
    let last = BLOCKS.last(txn)?.and_then(|(k, _)| keys::read_u64(k));
    let Some(state) = STATE.get(txn, SINGLE)? else {
        println!("empty store: no state yet");
        return Ok(());
    };
    match (first, last) {
        (Some(f), Some(l)) => println!("blocks {f}..={l}"),
        _ => println!("no blocks yet (genesis state)"),
    }
    print_state(state);
    Ok(())
}

fn print_state(state: &ArchivedStateSnapshot) {
    let clock = &state.clock;
    println!(
        "state: epoch {}, height {}, tip {}, root {}",
        clock.epoch.to_native(),
        clock.height.to_native(),
        hex::encode(state.tip_hash),
        hex::encode(state.root)
    );
    let ledger = &state.ledger;
    println!(
        "money: {} accounts, escrow {}, pending earnings {}, reserve {}, minted {}",
        ledger.accounts.len(),
        ledger.escrow.to_native(),
        ledger.pending.to_native(),
        ledger.reserve.to_native(),
        ledger.minted.to_native()
    );
    println!("open tasks {}, hosts {}:", state.tasks.len(), state.hosts.len());
    println!(
        "  {:>4}  {:<16}  {:>10}  {:>10}  {:>16}  last payout",
        "id", "key", "weight", "reputation", "earnings"
    );
    for h in state.hosts.iter() {
        let reputation = h.reputation.as_ref().map_or("-".to_string(), |r| r.epochs.to_native().to_string());
        let payout = h.payout.as_ref().map_or("-".to_string(), |p| {
            let withheld = p.withheld.as_ref().map_or("released".to_string(), |w| format!("withheld: {w:?}"));
            format!("epoch {}: {} {withheld}", p.epoch.to_native(), p.earned.to_native())
        });
        println!(
            "  {:>4}  {:<16}  {:>10}  {:>10}  {:>16}  {payout}",
            h.id.to_native(),
            &hex::encode(h.key)[..16],
            h.weight.to_native(),
            reputation,
            h.earnings.to_native()
        );
    }
}

fn epoch_view(txn: &ReadTxn<'_>, epoch: u64) -> anyhow::Result<()> {
    match SPRINTS.get(txn, &keys::u64(epoch))? {
        Some(s) => println!(
            "epoch {epoch}: Sprint seed {}, proofs at heights {}..={}, validation until {}",
            s.seed.as_ref().map_or("-".to_string(), hex::encode),
            s.start.to_native(),
            s.end.to_native(),
            s.validation_end.to_native()
        ),
        None => println!("epoch {epoch}: no Sprint seed recorded"),
    }
    println!("proof batches:");
    let from = keys::u64_u32(epoch, 0);
    let to = keys::u64_u32(epoch + 1, 0);
    for entry in PROOF_BATCHES.range(txn, from..to)? {
        let (key, batch) = entry?;
        let host = keys::read_u64_u32(key).map_or(u32::MAX, |k| k.1);
        println!(
            "  host {host:>4}: {:>7} proofs from {:>10} nonces tried, key {}…",
            batch.proofs.len(),
            batch.nonces_tried.to_native(),
            &hex::encode(batch.pubkey)[..16]
        );
    }
    println!("validation reports:");
    for entry in VALIDATIONS.range(txn, from..to)? {
        let (_, r) = entry?;
        let accepted = r.verdicts.iter().filter(|v| v.accept).count();
        println!(
            "  validator {:>4} at height {}: {accepted} accepted, {} rejected",
            r.validator.to_native(),
            r.height.to_native(),
            r.verdicts.len() - accepted
        );
    }
    match EPOCHS.get(txn, &keys::u64(epoch))? {
        None => println!("epoch {epoch} has not closed in this store"),
        Some(record) => {
            println!("closed at height {}:", record.close_height.to_native());
            for b in record.batches.iter() {
                println!(
                    "  batch of host {:>4}: {:>7} proofs committed, {:?}, accept {} / reject {} of {}",
                    b.host.to_native(),
                    b.commitment.proofs.to_native(),
                    b.status,
                    b.tally.accept.to_native(),
                    b.tally.reject.to_native(),
                    b.tally.validating.to_native()
                );
            }
            let weights: Vec<String> = record.weights.iter().map(|w| format!("{}:{}", w.0, w.2)).collect();
            println!("  next weights (host:weight) {}", weights.join(" "));
        }
    }
    Ok(())
}

fn task_view(txn: &ReadTxn<'_>, id: &[u8; 32]) -> anyhow::Result<()> {
    let Some(record) = TASKS.get_owned(txn, id)? else {
        anyhow::bail!("no task {} in this store (never seen, or pruned)", hex::encode(id));
    };
    let t = &record.task;
    println!("task {}", hex::encode(t.id));
    println!(
        "  payer {}…, model {}, max tokens {}, max cost {}",
        &hex::encode(t.payer)[..16],
        t.model,
        t.max_tokens,
        t.max_cost
    );
    println!(
        "  requested at {}, executor {}, intermediary {}, escrow {}",
        t.requested, t.executor, t.intermediary, t.escrow
    );
    println!("  status {:?}", t.status);
    for c in &t.checks {
        println!("  check by host {}: {}", c.validator, if c.pass { "pass" } else { "FAIL" });
    }
    match record.end {
        Some((height, end)) => println!("  ended at height {height}: {}", end.name()),
        None => println!("  still open"),
    }
    Ok(())
}

fn block_view(store: &ChainStore, txn: &ReadTxn<'_>, height: u64) -> anyhow::Result<()> {
    let Some(fb) = store.final_block(height)? else { anyhow::bail!("no block {height} in this store") };
    let h = &fb.block.header;
    println!("block {height}: hash {}, round {}, proposer {}", hex::encode(h.hash()), fb.round, h.proposer);
    println!("  parent {}, state root before {}", hex::encode(h.parent), hex::encode(h.state_root));
    if let Some(f) = FINALITY.get(txn, &keys::u64(height))? {
        println!("  state root after {}", hex::encode(f.state_root));
    }
    for (i, tx) in fb.block.transactions.iter().enumerate() {
        let ok = TRANSACTIONS.get(txn, &tx.id())?.is_some_and(|l| l.ok);
        println!(
            "  {i:>4} {:<20} from {}… {}",
            tx.body.kind(),
            &hex::encode(tx.sender)[..16],
            if ok { "ok" } else { "failed" }
        );
    }
    Ok(())
}
