//! Validation report entities.

use std::collections::BTreeMap;

use bevy_ecs::prelude::*;
use rkyv::{Archive, Deserialize, Serialize};

use crate::chain::types::BatchVerdict;

/// One validator's verdicts for one epoch's batches.
#[derive(Archive, Serialize, Deserialize, Component, Clone, Debug, PartialEq, Eq)]
pub struct ValidationReport {
    /// The epoch of the Sprint.
    pub epoch: u64,
    /// The validator's registry index.
    pub validator: u32,
    /// Verdicts, hosts strictly ascending.
    pub verdicts: Vec<BatchVerdict>,
    /// Height of the report.
    pub height: u64,
}

/// Report entities by (epoch, validator).
#[derive(Resource, Debug, Default)]
pub struct ReportIndex(pub BTreeMap<(u64, u32), Entity>);
