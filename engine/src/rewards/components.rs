//! The ledger resource and the per-host economy components.

use std::collections::BTreeMap;

use bevy_ecs::prelude::*;
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::PublicKeyBytes;
use crate::params::Amount;

/// One account: a balance and the next nonce its owner may use.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable base units.
    pub balance: Amount,
    /// The nonce the owner's next transfer, request or report must carry.
    pub nonce: u64,
}

/// Why money could not move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The account holds less than asked.
    #[error("account {account} holds {balance}, {needed} needed")]
    Insufficient {
        /// The account, hex.
        account: String,
        /// Its balance.
        balance: Amount,
        /// The amount asked.
        needed: Amount,
    },
}

/// Every account and pool of the chain.
#[derive(Archive, Serialize, Deserialize, Resource, Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Accounts by key (users and hosts alike), created on first credit.
    pub accounts: BTreeMap<PublicKeyBytes, Account>,
    /// Held for open tasks: the sum of every task's escrow.
    pub escrow: Amount,
    /// Earned this epoch, not yet released: the sum of every host's [`Earnings`].
    pub pending: Amount,
    /// 20 % (a parameter) of every task payment, for training (whitepaper §8).
    pub training_fund: Amount,
    /// Forfeited earnings, rounding dust and unpaid subsidy; pays bounties and dummy requests.
    pub reserve: Amount,
    /// Supply at genesis.
    pub genesis_supply: Amount,
    /// Subsidy minted since genesis.
    pub minted: Amount,
    /// What the next epoch boundary mints.
    pub next_subsidy: Amount,
}

impl Ledger {
    /// The balance of `key` (zero for an unknown account).
    pub fn balance(&self, key: &PublicKeyBytes) -> Amount {
        self.accounts.get(key).map_or(0, |a| a.balance)
    }

    /// The nonce `key`'s next transaction must carry.
    pub fn nonce(&self, key: &PublicKeyBytes) -> u64 {
        self.accounts.get(key).map_or(0, |a| a.nonce)
    }

    /// Adds `amount` to `key`'s balance.
    pub fn credit(&mut self, key: &PublicKeyBytes, amount: Amount) {
        if amount > 0 {
            self.accounts.entry(*key).or_default().balance += amount;
        }
    }

    /// Takes `amount` from `key`'s balance, or changes nothing.
    pub fn debit(&mut self, key: &PublicKeyBytes, amount: Amount) -> Result<(), LedgerError> {
        let balance = self.balance(key);
        if balance < amount {
            return Err(LedgerError::Insufficient { account: hex::encode(key), balance, needed: amount });
        }
        if amount > 0 {
            self.accounts.entry(*key).or_default().balance = balance - amount;
        }
        Ok(())
    }

    /// Moves `amount` of `key`'s balance into escrow.
    pub fn hold(&mut self, key: &PublicKeyBytes, amount: Amount) -> Result<(), LedgerError> {
        self.debit(key, amount)?;
        self.escrow += amount;
        Ok(())
    }

    /// Moves `amount` out of escrow back to `key`.
    pub fn refund(&mut self, key: &PublicKeyBytes, amount: Amount) {
        self.escrow -= amount;
        self.credit(key, amount);
    }

    /// Uses up the next nonce of `key` if it is `nonce`.
    pub fn use_nonce(&mut self, key: &PublicKeyBytes, nonce: u64) -> Result<(), (u64, u64)> {
        let expected = self.nonce(key);
        if nonce != expected {
            return Err((nonce, expected));
        }
        self.accounts.entry(*key).or_default().nonce = expected + 1;
        Ok(())
    }

    /// Everything that exists.
    pub fn supply(&self) -> Amount {
        self.accounts.values().map(|a| a.balance).sum::<Amount>()
            + self.escrow
            + self.pending
            + self.training_fund
            + self.reserve
    }

    /// Takes up to `amount` from the reserve; returns what it took.
    pub fn draw_reserve(&mut self, amount: Amount) -> Amount {
        let taken = amount.min(self.reserve);
        self.reserve -= taken;
        taken
    }

    /// The supply invariant: what exists is what genesis made plus what was minted.
    pub fn check(&self) -> Result<(), String> {
        let supply = self.supply();
        let expected = self.genesis_supply + self.minted;
        if supply != expected {
            return Err(format!(
                "supply {supply} ≠ genesis {} + minted {}",
                self.genesis_supply, self.minted
            ));
        }
        Ok(())
    }
}

/// A host's earnings of this epoch (fees, shares of task pay, bounties,
/// subsidy), released to its account at the epoch's end only if it
/// qualifies; otherwise forfeited to the reserve.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Earnings(pub Amount);

/// What a host did this epoch, for the release rules and reputation.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpochWork {
    /// Tasks drawn to it.
    pub assigned: u32,
    /// Tasks it finished.
    pub finished: u32,
    /// Tasks that expired in its hands.
    pub expired: u32,
    /// Tokens of its finished tasks.
    pub tokens: u64,
    /// Task checks it submitted.
    pub checks: u32,
    /// Dispute votes it sent.
    pub votes: u32,
    /// Dispute votes it owed: one per dispute closed while it held weight (not its own).
    pub owed_votes: u32,
    /// Its outputs whose mismatch a re-verification confirmed.
    pub frauds: u32,
    /// Its checks and dispute votes on tasks that proved honest.
    pub judged_honest: u32,
    /// Of those, the ones that called a mismatch (false alarms).
    pub alarms: u32,
    /// Its checks and dispute votes on tasks whose mismatch was confirmed.
    pub judged_frauds: u32,
    /// Of those, the ones that passed the output (missed frauds).
    pub missed: u32,
}

impl EpochWork {
    /// Whether its verdicts were wrong too often to be the test's noise:
    /// more than `allowance` false alarms making up more than half of its
    /// verdicts on honest tasks, or more than `allowance` missed frauds
    /// making up more than half of its verdicts on fraudulent ones.
    pub fn inaccurate(&self, allowance: u32) -> bool {
        let bad = |wrong: u32, judged: u32| wrong > allowance && 2 * u64::from(wrong) > u64::from(judged);
        bad(self.alarms, self.judged_honest) || bad(self.missed, self.judged_frauds)
    }
}

/// Epochs of fraud-free activity, and the epoch of the latest.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reputation {
    /// `r`: epochs of activity without fraud since the last reset.
    pub epochs: u32,
    /// The last epoch the host was active in.
    pub last_active: u64,
}

/// Request volume, for `p_min`.
#[derive(Archive, Serialize, Deserialize, Resource, Clone, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    /// Requests in the previous epoch.
    pub previous: u64,
    /// Requests so far in this epoch.
    pub current: u64,
    /// Requests of users (not dummies) in the previous epoch.
    pub real_previous: u64,
    /// Requests of users so far in this epoch.
    pub real_current: u64,
    /// `Σ p` over this epoch's finished tasks (units of 2^-32): the checks the network owes.
    pub owed_checks: u128,
    /// Requests per model this epoch (the tasks the hosts serving it owe), by model index.
    pub per_model: Vec<u64>,
}

/// Why a host's earnings of an epoch were withheld.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[rkyv(derive(Debug))]
pub enum Withheld {
    /// Equivocation, a rejected Sprint batch, a confirmed mismatch, or
    /// inaccurate verdicts ([`EpochWork::inaccurate`]).
    Fraud,
    /// Finished too few of the tasks its weight share owed.
    TooLittleWork,
    /// Checked too few tasks or proof batches for its weight share.
    TooFewValidations,
}

impl Withheld {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Withheld::Fraud => "fraud",
            Withheld::TooLittleWork => "too little work",
            Withheld::TooFewValidations => "too few validations",
        }
    }

    /// A stable code for the state root.
    pub fn code(self) -> u8 {
        self as u8 + 1
    }
}

/// The outcome of a host's latest epoch: what it had earned and whether it
/// was released.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payout {
    /// The epoch.
    pub epoch: u64,
    /// Earned in it (released or forfeited).
    pub earned: Amount,
    /// `None`: released to its account.
    pub withheld: Option<Withheld>,
    /// What it did in the epoch.
    pub work: EpochWork,
}
