//! Host systems.

use bevy_ecs::prelude::*;

use super::components::*;
use crate::chain::input::{BlockInput, TxError};
use crate::chain::types::Transaction;
use crate::crypto::Domain;

/// Registers the senders of `RegisterHost` transactions whose proof of
/// possession verifies, in block order; a key registers once.
pub fn register_hosts(
    mut commands: Commands,
    mut input: ResMut<BlockInput>,
    mut registry: ResMut<HostRegistry>,
    verifier: Res<crate::chain::Verifier>,
) {
    let height = input.height;
    let pending: Vec<(usize, _, _)> = input
        .pending(|tx| match tx {
            Transaction::RegisterHost { proof_of_possession } => Some(*proof_of_possession),
            _ => None,
        })
        .map(|(i, sender, pop)| (i, *sender, pop))
        .collect();
    for (i, sender, pop) in pending {
        let outcome = if let Some(host) = registry.id_of(&sender) {
            Err(TxError::Duplicate { what: "register host", host })
        } else if let Err(e) = verifier.0.verify(Domain::ProofOfPossession, &sender, &sender, &pop) {
            Err(TxError::Invalid { what: "register host", why: e.to_string() })
        } else {
            let entity = commands.spawn_empty().id();
            let id = registry.insert(sender, entity);
            commands.entity(entity).insert((
                HostId(id),
                HostPublicKey(sender),
                Weight(0),
                RegisteredAt(height),
                ValidationDuty::default(),
                crate::rewards::EpochWork::default(),
                crate::rewards::Earnings::default(),
                crate::tasks::Serves::default(),
            ));
            Ok(())
        };
        input.record(i, outcome);
    }
}
