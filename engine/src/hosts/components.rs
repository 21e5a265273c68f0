//! Host components and the resources that index them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::PublicKeyBytes;
use crate::crypto::votes::{EpochHosts, VoteError};

/// A host's registry index: its protocol key, assigned in registration order.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostId(pub u32);

/// A host's BLS public key (its proof of possession was checked at registration).
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPublicKey(pub PublicKeyBytes);

/// Voting weight held this epoch: the accepted proofs of the last Sprint.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weight(pub u64);

/// The height at which the host registered (genesis hosts: 0).
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisteredAt(pub u64);

/// The host equivocated in this epoch: its weight is gone for the rest of
/// the epoch, it earns none for the next, and it forfeits the epoch's rewards.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Penalized {
    /// The epoch of the offence.
    pub epoch: u64,
}

/// This epoch's validation share: batches the host should have judged and
/// batches it did (the rewards rule reads both).
#[derive(Archive, Serialize, Deserialize, Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidationDuty {
    /// Batches open to its judgment.
    pub expected: u32,
    /// Batches it judged.
    pub done: u32,
}

/// Every registered host by key and by registry index.
#[derive(Resource, Debug, Default)]
pub struct HostRegistry {
    by_key: BTreeMap<PublicKeyBytes, u32>,
    entities: Vec<Entity>,
}

impl HostRegistry {
    /// The registry index of `key`.
    pub fn id_of(&self, key: &PublicKeyBytes) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    /// The entity of host `id`.
    pub fn entity(&self, id: u32) -> Option<Entity> {
        self.entities.get(id as usize).copied()
    }

    /// Number of registered hosts.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Records a new host; returns its index.
    pub(crate) fn insert(&mut self, key: PublicKeyBytes, entity: Entity) -> u32 {
        let id = u32::try_from(self.entities.len()).expect("registry below 2^32 hosts");
        self.by_key.insert(key, id);
        self.entities.push(entity);
        id
    }
}

/// The hosts that vote this epoch: every host with non-zero weight at the
/// epoch's start, in registry order. Vote bitmaps index this list.
#[derive(Resource, Debug, Clone)]
pub struct VotingHosts {
    /// The epoch.
    pub epoch: u64,
    /// Keys and weights (a penalized host's weight drops to zero mid-epoch).
    pub hosts: Arc<EpochHosts>,
    /// Registry index of each voting host, ascending.
    pub ids: Vec<u32>,
    /// Their weights, in the same order.
    pub weights: Vec<u64>,
    /// Their keys, in the same order.
    pub keys: Vec<PublicKeyBytes>,
}

impl VotingHosts {
    /// The list for `epoch` from `(registry index, key, weight)` with weight > 0, ascending by index.
    pub fn new(
        epoch: u64,
        members: Vec<(u32, PublicKeyBytes, u64)>,
        cache: &crate::crypto::cache::SigCache,
    ) -> Result<Self, VoteError> {
        let pairs: Vec<(PublicKeyBytes, u64)> = members.iter().map(|&(_, k, w)| (k, w)).collect();
        let hosts = Arc::new(EpochHosts::new_cached(&pairs, cache)?);
        Ok(Self {
            epoch,
            hosts,
            ids: members.iter().map(|m| m.0).collect(),
            weights: members.iter().map(|m| m.2).collect(),
            keys: members.iter().map(|m| m.1).collect(),
        })
    }

    /// Position of registry index `id` in the list.
    pub fn position(&self, id: u32) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// Total weight.
    pub fn total_weight(&self) -> u128 {
        self.hosts.total_weight()
    }

    /// The same list with host `id`'s weight set to zero; `None` if that
    /// would leave no weight at all.
    pub fn without(&self, id: u32) -> Option<Self> {
        let pos = self.position(id)?;
        let mut weights = self.weights.clone();
        weights[pos] = 0;
        let hosts = Arc::new(self.hosts.with_weights(weights.clone()).ok()?);
        Some(Self { hosts, weights, ..self.clone() })
    }
}
