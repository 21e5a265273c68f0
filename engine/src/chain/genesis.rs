//! The genesis: parameters, the first hosts and their weights, and the seed
//! that chains the first beacon.

use gonka_kernels::encoding::{Hash32, tagged_hash};
use rkyv::{Archive, Deserialize, Serialize};

use super::ChainError;
use crate::crypto::{Domain, HostKey, PublicKeyBytes, SignatureBytes};
use crate::params::ChainParams;

/// A host present at genesis.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GenesisHost {
    /// Its key.
    pub public_key: PublicKeyBytes,
    /// Its proof of possession.
    pub proof_of_possession: SignatureBytes,
    /// Its weight in epoch 0.
    pub weight: u64,
    /// The models it serves in epoch 0 (bit mask; bits beyond the model list are ignored).
    pub models: u64,
}

/// An account funded at genesis.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenesisAccount {
    /// The owner's key.
    pub key: PublicKeyBytes,
    /// Base units.
    pub balance: crate::params::Amount,
}

impl GenesisHost {
    /// An entry for `key` with `weight`, serving every model.
    pub fn new(key: &HostKey, weight: u64) -> Self {
        Self {
            public_key: key.public_key(),
            proof_of_possession: key.proof_of_possession(),
            weight,
            models: u64::MAX,
        }
    }
}

/// Everything the chain starts from.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Genesis {
    /// The parameters.
    pub params: ChainParams,
    /// Chains the first beacon (`previous` of epoch 0).
    pub seed: Hash32,
    /// The first hosts, in registry order.
    pub hosts: Vec<GenesisHost>,
    /// Funded accounts, keys ascending.
    pub accounts: Vec<GenesisAccount>,
    /// The reserve at genesis (pays dummy requests and bounties).
    pub reserve: crate::params::Amount,
}

impl Genesis {
    /// The chain's identity: a digest of the whole genesis.
    pub fn digest(&self) -> Hash32 {
        tagged_hash("gonka/genesis", &[&crate::crypto::wire::encode(self)])
    }

    /// Parameters valid, keys valid with proofs of possession, no repeats,
    /// some weight.
    pub fn validate(&self, cache: &crate::crypto::cache::SigCache) -> Result<(), ChainError> {
        self.params.validate().map_err(|e| ChainError::Genesis(e.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if !seen.insert(h.public_key) {
                return Err(ChainError::Genesis(format!("host {i} repeats an earlier key")));
            }
            cache
                .verify(Domain::ProofOfPossession, &h.public_key, &h.public_key, &h.proof_of_possession)
                .map_err(|e| ChainError::Genesis(format!("host {i}: proof of possession: {e}")))?;
        }
        if self.accounts.windows(2).any(|w| w[0].key >= w[1].key) {
            return Err(ChainError::Genesis("account keys must be strictly ascending".into()));
        }
        let mut supply = self.reserve;
        for a in &self.accounts {
            supply = supply
                .checked_add(a.balance)
                .ok_or_else(|| ChainError::Genesis("supply overflows".into()))?;
        }
        // Room for every base unit the subsidy will ever mint (Σ S_e ≤ S_0 / decay).
        let e = &self.params.economy;
        let emission = (e.subsidy_decay.num > 0)
            .then(|| e.epoch_subsidy.checked_mul(u128::from(e.subsidy_decay.den)))
            .flatten()
            .map(|x| x / u128::from(e.subsidy_decay.num));
        if emission.and_then(|m| supply.checked_add(m)).is_none_or(|total| total > u128::MAX / 2) {
            return Err(ChainError::Genesis(
                "genesis supply plus the whole future subsidy must stay below 2^127 (and the subsidy must decay)"
                    .into(),
            ));
        }
        if self.hosts.iter().all(|h| h.weight == 0) {
            return Err(ChainError::Genesis("no host has weight".into()));
        }
        Ok(())
    }
}

impl crate::crypto::wire::WireMessage for Genesis {
    const KIND: &'static str = "genesis";
    const MAX_BYTES: usize = 64 << 20;
    fn check_bounds(&self) -> Result<(), crate::crypto::wire::WireError> {
        use crate::crypto::wire::bound;
        bound(Self::KIND, "hosts", self.hosts.len(), crate::crypto::votes::MAX_HOSTS)?;
        bound(Self::KIND, "accounts", self.accounts.len(), 1 << 20)
    }
}
