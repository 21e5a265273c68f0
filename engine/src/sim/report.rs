//! What a simulation measured: a row per epoch and the safety verdicts.

use std::fmt::Write as _;
use std::time::Duration;

/// One epoch as the honest replicas saw it at its last block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochRow {
    /// The epoch.
    pub epoch: u64,
    /// Weight honest hosts hold for the next epoch.
    pub honest_weight: u64,
    /// Weight adversaries hold for the next epoch.
    pub adversary_weight: u64,
    /// Genuine batches (every host's but the fraudsters') accepted.
    pub good_accepted: u32,
    /// Genuine batches rejected (must stay 0).
    pub good_rejected: u32,
    /// Genuine batches of honest hosts neither accepted nor rejected, or never submitted.
    pub good_undecided: u32,
    /// Bad batches accepted (must stay 0).
    pub bad_accepted: u32,
    /// Bad batches rejected by validators.
    pub bad_rejected: u32,
    /// Bad batches the chain refused before validation (no contents on chain).
    pub bad_refused: u32,
    /// Hosts penalized for equivocation this epoch.
    pub penalized: u32,
    /// Whether the epoch's beacon came out (and with it the Sprint).
    pub beacon: bool,
    /// Blocks decided in round 0.
    pub first_round_blocks: u32,
    /// Largest deciding round.
    pub max_round: u32,
    /// Blocks in the epoch.
    pub blocks: u32,
    /// Inference tasks finished.
    pub tasks: u32,
    /// Task checks submitted.
    pub checks: u32,
    /// Confirmed mismatches.
    pub frauds: u32,
    /// Honest hosts whose earnings were withheld (must stay 0).
    pub honest_withheld: u32,
    /// Adversaries whose earnings were withheld.
    pub adversaries_withheld: u32,
}

impl EpochRow {
    /// One line for progress output.
    pub fn summary(&self) -> String {
        format!(
            "epoch {}: {} blocks, beacon {}, weight honest {} / adversarial {}, batches good {}/{}/{} bad {}/{}/{}, tasks {} checks {} frauds {}, withheld honest {} adversarial {}",
            self.epoch,
            self.blocks,
            if self.beacon { "yes" } else { "no" },
            self.honest_weight,
            self.adversary_weight,
            self.good_accepted,
            self.good_rejected,
            self.good_undecided,
            self.bad_accepted,
            self.bad_rejected,
            self.bad_refused,
            self.tasks,
            self.checks,
            self.frauds,
            self.honest_withheld,
            self.adversaries_withheld
        )
    }
}

/// One strategy's economics over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StrategyRow {
    /// The strategy.
    pub role: &'static str,
    /// Hosts playing it.
    pub hosts: u32,
    /// Host-epochs played.
    pub host_epochs: u64,
    /// Host-epochs whose earnings were withheld.
    pub withheld_epochs: u64,
    /// Hosts withheld at least once.
    pub detected_hosts: u32,
    /// Over the detected hosts: epochs from the first to the first withheld, inclusive.
    pub epochs_to_detection: u64,
    /// Earnings released to their accounts.
    pub released: u128,
    /// Earnings forfeited.
    pub forfeited: u128,
    /// Work done, in forward passes (Sprint nonces + tokens run or recomputed).
    pub work: u128,
}

impl StrategyRow {
    /// Released earnings per million forward passes of work.
    pub fn pay_per_work(&self) -> f64 {
        self.released as f64 * 1e6 / (self.work.max(1)) as f64
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Hosts simulated.
    pub hosts: usize,
    /// Adversaries among them.
    pub adversaries: usize,
    /// One row per finished epoch.
    pub epochs: Vec<EpochRow>,
    /// Each host's part.
    pub roles: Vec<super::Role>,
    /// One row per strategy played, honest first.
    pub strategies: Vec<StrategyRow>,
    /// Requests and reports the users sent.
    pub requests: (u64, u64),
    /// Every honest host-epoch whose earnings were withheld: epoch, host, why, what it did.
    pub honest_withheld: Vec<(u64, u32, crate::rewards::Withheld, crate::rewards::EpochWork)>,
    /// Highest height every honest online host applied.
    pub height: u64,
    /// Heights at which two different blocks were final (must stay 0).
    pub conflicting_commits: u32,
    /// Heights at which honest replicas disagreed on the state root (must stay 0).
    pub root_mismatches: u32,
    /// Hosts that halted on a state-root mismatch.
    pub halted: u32,
    /// Restarts of a host from its own state snapshot.
    pub restarts: u64,
    /// Simulated time, ms.
    pub simulated_ms: u64,
    /// Wall-clock time of the run.
    pub wall: Duration,
    /// Messages delivered and lost.
    pub messages: (u64, u64),
    /// Wall time of each chain system summed over every block one replica applied, in schedule order.
    pub system_times: Vec<(String, Duration)>,
    /// Blocks one replica applied, and its total time applying them.
    pub replica_blocks: (u64, Duration),
    /// The chain's block interval, ms.
    pub block_interval_ms: u64,
    /// A digest of everything above but the wall-clock figures (equal runs, equal digests).
    pub digest: [u8; 32],
}

impl SimReport {
    /// Final blocks per wall-clock second of the whole simulation.
    pub fn blocks_per_second(&self) -> f64 {
        (self.height + 1) as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Mean wall time for one replica to apply one block.
    pub fn apply_time(&self) -> Duration {
        self.replica_blocks.1 / self.replica_blocks.0.max(1) as u32
    }

    /// The per-epoch table and the summary, for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "epoch | blocks | beacon | weight honest/adv | good batches acc/rej/undec | bad batches acc/rej/refused | penalized | rounds: r0 blocks, max"
        );
        for r in &self.epochs {
            let _ = writeln!(
                s,
                "{:>5} | {:>6} | {:>6} | {:>8}/{:<8} | {:>12}/{}/{:<12} | {:>11}/{}/{:<14} | {:>9} | {:>3}, {}",
                r.epoch,
                r.blocks,
                if r.beacon { "yes" } else { "no" },
                r.honest_weight,
                r.adversary_weight,
                r.good_accepted,
                r.good_rejected,
                r.good_undecided,
                r.bad_accepted,
                r.bad_rejected,
                r.bad_refused,
                r.penalized,
                r.first_round_blocks,
                r.max_round,
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{} hosts ({} adversarial), {} blocks in {:.1} s simulated, {:.1} s wall: {:.3} blocks/s",
            self.hosts,
            self.adversaries,
            self.height + 1,
            self.simulated_ms as f64 / 1000.0,
            self.wall.as_secs_f64(),
            self.blocks_per_second()
        );
        let _ = writeln!(
            s,
            "block application: {:.3} ms per block per replica; simulated block time {:.0} ms (interval {} ms + consensus); messages {} delivered, {} lost",
            self.apply_time().as_secs_f64() * 1e3,
            self.simulated_ms as f64 / (self.height + 1) as f64,
            self.block_interval_ms,
            self.messages.0,
            self.messages.1
        );
        let _ = writeln!(s, "time per block of each chain system (one replica):");
        for (name, t) in &self.system_times {
            let per = t.as_secs_f64() * 1e6 / self.replica_blocks.0.max(1) as f64;
            let _ = writeln!(s, "  {name:<28} {per:>10.1} µs");
        }
        let bad_accepted: u32 = self.epochs.iter().map(|r| r.bad_accepted).sum();
        let good_rejected: u32 = self.epochs.iter().map(|r| r.good_rejected).sum();
        let _ = writeln!(
            s,
            "safety: conflicting final blocks {}, state-root mismatches {}, halted hosts {}; bad batches accepted {}, genuine batches rejected {}",
            self.conflicting_commits, self.root_mismatches, self.halted, bad_accepted, good_rejected
        );
        self.render_economy(&mut s);
        let _ = writeln!(s, "run digest {}", hex::encode(self.digest));
        s
    }
}

impl SimReport {
    /// Checks per finished task over the run.
    pub fn validation_overhead(&self) -> f64 {
        let tasks: u64 = self.epochs.iter().map(|e| u64::from(e.tasks)).sum();
        let checks: u64 = self.epochs.iter().map(|e| u64::from(e.checks)).sum();
        checks as f64 / tasks.max(1) as f64
    }

    fn render_economy(&self, s: &mut String) {
        if self.strategies.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "tasks: {} requests and {} reports sent by users; {} finished, {} checks ({:.3} per task), {} confirmed frauds",
            self.requests.0,
            self.requests.1,
            self.epochs.iter().map(|e| e.tasks).sum::<u32>(),
            self.epochs.iter().map(|e| e.checks).sum::<u32>(),
            self.validation_overhead(),
            self.epochs.iter().map(|e| e.frauds).sum::<u32>(),
        );
        for (epoch, host, why, work) in &self.honest_withheld {
            let _ = writeln!(s, "honest host {host} withheld in epoch {epoch}: {} ({work:?})", why.name());
        }
        let honest =
            self.strategies.iter().find(|r| r.role == "honest").map_or(0.0, StrategyRow::pay_per_work);
        let _ = writeln!(
            s,
            "strategy              | hosts | withheld epochs | detected | epochs to detection | released     | forfeited    | pay per Mwork | vs honest"
        );
        for r in &self.strategies {
            let to_detection = if r.detected_hosts == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", r.epochs_to_detection as f64 / f64::from(r.detected_hosts))
            };
            let _ = writeln!(
                s,
                "{:<21} | {:>5} | {:>7}/{:<7} | {:>4}/{:<3} | {:>19} | {:>12} | {:>12} | {:>13.1} | {:>8.3}",
                r.role,
                r.hosts,
                r.withheld_epochs,
                r.host_epochs,
                r.detected_hosts,
                r.hosts,
                to_detection,
                r.released,
                r.forfeited,
                r.pay_per_work(),
                if honest > 0.0 { r.pay_per_work() / honest } else { 0.0 },
            );
        }
    }
}
