//! A chain without a network: every host's agent acts on one replica, the
//! drawn proposer's block carries what they sent, and every voting host
//! precommits it. Real blocks with real finality certificates, produced as
//! fast as the agents work (stores, tools, benches and tests that need a
//! chain but not consensus).

use gonka_kernels::encoding::{Hash32, tagged_hash};

use crate::agent::{Agent, Behavior, ModelCache};
use crate::chain::types::{FinalBlock, SignedTransaction};
use crate::chain::{ApplyReport, Chain, ChainError};
use crate::consensus::{ConsensusError, certify, proposer};
use crate::crypto::HostKey;

/// One replica driven by the agents of the hosts whose keys it holds.
#[derive(Debug)]
pub struct Producer {
    chain: Chain,
    keys: Vec<HostKey>,
    agents: Vec<Agent>,
    models: ModelCache,
    pending: Vec<SignedTransaction>,
}

impl Producer {
    /// Agents for the hosts of key material `ikms` (honest, mining
    /// `nonces_per_sprint` nonces per Sprint on `threads` cores) acting on
    /// `chain`, at whatever height it is.
    pub fn new(chain: Chain, ikms: &[Hash32], nonces_per_sprint: u64, threads: usize) -> Self {
        let keys: Vec<HostKey> = ikms.iter().map(HostKey::from_ikm).collect();
        let agents = ikms
            .iter()
            .map(|ikm| {
                let entropy = tagged_hash("gonka/producer-entropy", &[ikm]);
                Agent::new(HostKey::from_ikm(ikm), entropy, Behavior::honest(nonces_per_sprint), threads)
            })
            .collect();
        let mut producer = Self { chain, keys, agents, models: ModelCache::default(), pending: Vec::new() };
        producer.collect();
        producer
    }

    /// The replica.
    pub fn chain(&mut self) -> &mut Chain {
        &mut self.chain
    }

    /// Gives the replica up.
    pub fn into_chain(self) -> Chain {
        self.chain
    }

    fn collect(&mut self) {
        for agent in &mut self.agents {
            let txs = agent.on_block(&mut self.chain, &self.models);
            self.pending.extend(txs);
        }
    }

    /// The next block, carrying what the agents sent and `extra`, made final
    /// by every voting host whose key this producer holds, and applied.
    pub fn next(&mut self, extra: Vec<SignedTransaction>) -> Result<(FinalBlock, ApplyReport), ChainError> {
        let mut txs = std::mem::take(&mut self.pending);
        txs.extend(extra);
        let max = self.chain.params().max_block_transactions as usize;
        if txs.len() > max {
            // What does not fit waits for the next block.
            self.pending = txs.split_off(max);
        }
        let height = self.chain.next_height();
        let voting = self.chain.voting().clone();
        let position = proposer(&self.chain.proposer_seed(), height, 0, &voting.hosts);
        let block = self.chain.build_block(0, position, txs);
        let signers: Vec<(usize, &HostKey)> = voting
            .keys
            .iter()
            .enumerate()
            .filter_map(|(p, pk)| self.keys.iter().find(|k| k.public_key() == *pk).map(|k| (p, k)))
            .collect();
        let finality =
            certify(&voting.hosts, height, 0, &block.header.hash(), &signers).map_err(|source| {
                ChainError::Finality { height, source: ConsensusError::Finality { height, round: 0, source } }
            })?;
        let fb = FinalBlock { block, round: 0, finality };
        let report = self.chain.apply(&fb)?;
        let leftover = std::mem::take(&mut self.pending);
        self.collect();
        self.pending.extend(leftover);
        Ok((fb, report))
    }
}
