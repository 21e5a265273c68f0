//! The simulated users: funded accounts that send inference requests at the
//! configured rate and report a share of their finished tasks.

use std::collections::BTreeSet;

use gonka_kernels::encoding::{Hash32, tagged_hash};

use super::network::SimRng;
use crate::chain::Chain;
use crate::chain::genesis::GenesisAccount;
use crate::chain::types::{SignedTransaction, Transaction};
use crate::crypto::HostKey;
use crate::params::Amount;
use crate::tasks::{InferenceRequest, Task, TaskStatus};

/// Each user's balance at genesis.
pub const USER_BALANCE: Amount = 1 << 60;

/// Blocks a user waits for its transaction before sending it again.
const RESEND_BLOCKS: u64 = 3;

/// Blocks after which a user gives up on a transaction that has not landed.
const GIVE_UP_BLOCKS: u64 = 6;

/// A user's transaction waiting to land: its nonce, when it was sent, the transaction.
type InFlight = (u64, u64, SignedTransaction);

/// The users of one simulation.
#[derive(Debug)]
pub struct Users {
    keys: Vec<HostKey>,
    in_flight: Vec<Option<InFlight>>,
    rng: SimRng,
    per_epoch: u64,
    report_permille: u32,
    /// Requests owed but not yet sent (rate × blocks, in thousandths).
    owed_milli: u64,
    reported: BTreeSet<Hash32>,
    next_user: usize,
    /// Requests and reports sent (first sends only).
    pub sent: (u64, u64),
}

impl Users {
    /// `count` users under `seed`, sending `per_epoch` requests per epoch.
    pub fn new(seed: u64, count: usize, per_epoch: u64, report_permille: u32) -> Self {
        let keys: Vec<HostKey> = (0..count)
            .map(|i| {
                HostKey::from_ikm(&tagged_hash(
                    "gonka/sim-user",
                    &[&seed.to_le_bytes(), &(i as u64).to_le_bytes()],
                ))
            })
            .collect();
        Self {
            in_flight: vec![None; keys.len()],
            keys,
            rng: SimRng::new(seed, "users"),
            per_epoch,
            report_permille,
            owed_milli: 0,
            reported: BTreeSet::new(),
            next_user: 0,
            sent: (0, 0),
        }
    }

    /// Their genesis accounts, keys ascending.
    pub fn accounts(&self) -> Vec<GenesisAccount> {
        let mut a: Vec<GenesisAccount> =
            self.keys.iter().map(|k| GenesisAccount { key: k.public_key(), balance: USER_BALANCE }).collect();
        a.sort_unstable_by_key(|a| a.key);
        a
    }

    /// What the users send after `chain` applied a block: resends of
    /// transactions that did not land, new requests at the configured rate,
    /// and reports of a share of their finished tasks.
    pub fn act(&mut self, chain: &mut Chain) -> Vec<SignedTransaction> {
        let next = chain.next_height();
        let mut out = Vec::new();
        for (u, key) in self.keys.iter().enumerate() {
            let nonce = chain.ledger().nonce(&key.public_key());
            match &self.in_flight[u] {
                Some((n, _, _)) if nonce > *n => self.in_flight[u] = None,
                // Lost, or refused on chain (a report of a task that settled
                // meanwhile): the user gives up on it and moves on with the
                // same nonce, as a client whose request timed out would.
                Some((_, sent, _)) if next >= sent + GIVE_UP_BLOCKS => self.in_flight[u] = None,
                Some((n, sent, tx)) if next == sent + RESEND_BLOCKS => {
                    out.push(tx.clone());
                    self.in_flight[u] = Some((*n, *sent, tx.clone()));
                }
                _ => {}
            }
        }
        if self.keys.is_empty() {
            return out;
        }
        // Reports first: a user checks its own finished tasks.
        if self.report_permille > 0 {
            let world = chain.world_mut_for_queries();
            let mut q = world.query::<&Task>();
            let mut finished: Vec<(Hash32, crate::crypto::PublicKeyBytes)> = q
                .iter(world)
                .filter(|t| matches!(&t.status, TaskStatus::Finished(f) if next <= f.checks_until))
                .map(|t| (t.id, t.payer))
                .collect();
            finished.sort_unstable();
            for (id, payer) in finished {
                let Some(u) = self.keys.iter().position(|k| k.public_key() == payer) else { continue };
                if self.in_flight[u].is_some() || !self.reported.insert(id) {
                    continue;
                }
                if self.rng.range(0, 999) < u64::from(self.report_permille) {
                    let nonce = chain.ledger().nonce(&payer);
                    let tx = SignedTransaction::sign(&self.keys[u], Transaction::Report { task: id, nonce });
                    self.in_flight[u] = Some((nonce, next, tx.clone()));
                    self.sent.1 += 1;
                    out.push(tx);
                }
            }
        }
        let params = chain.params().clone();
        self.owed_milli += self.per_epoch * 1000 / params.epoch_blocks.max(1);
        let models = &params.economy.models;
        let mut tried = 0;
        while self.owed_milli >= 1000 && tried < self.keys.len() {
            let u = self.next_user;
            self.next_user = (self.next_user + 1) % self.keys.len();
            tried += 1;
            if self.in_flight[u].is_some() {
                continue;
            }
            self.owed_milli -= 1000;
            let key = &self.keys[u];
            let nonce = chain.ledger().nonce(&key.public_key());
            let model = self.rng.range(0, models.len() as u64 - 1) as u32;
            let max_tokens = self.rng.range(8, 32) as u32;
            let full = models[model as usize].price_per_token * u128::from(max_tokens);
            // One request in ten budgets half: some of those stop at their limit.
            let max_cost = if self.rng.range(0, 9) == 0 { full / 2 } else { full };
            let prompt = crate::tasks::prompt_commitment(&format!("user {u} request {nonce}"));
            let body = Transaction::InferenceRequest(InferenceRequest {
                nonce,
                model,
                prompt,
                max_tokens,
                max_cost: max_cost.max(1),
            });
            let tx = SignedTransaction::sign(key, body);
            self.in_flight[u] = Some((nonce, next, tx.clone()));
            self.sent.0 += 1;
            out.push(tx);
        }
        // Requests no free user could take wait for the next block, up to one epoch's worth.
        self.owed_milli = self.owed_milli.min(self.per_epoch * 1000);
        out
    }
}
