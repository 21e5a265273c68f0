//! Who relays and who runs a request: drawn from the beacon and the task id,
//! so the payer cannot pick its executor without grinding task ids against
//! a beacon it does not control, and anyone can recompute the draw.

use gonka_kernels::encoding::{Hash32, tagged_hash};

use crate::crypto::selection::DrawStream;

/// A voting host as the router sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Registry index.
    pub id: u32,
    /// Voting weight this epoch.
    pub weight: u64,
    /// Models served this epoch (bit mask).
    pub serves: u64,
}

/// The executor, drawn in proportion to weight among the hosts serving
/// `model`, and the intermediary, drawn uniformly among the other voting
/// hosts (the executor itself when it is the only one). `None` when no host
/// with weight serves the model.
pub fn route(beacon: &Hash32, task: &Hash32, model: u32, hosts: &[Candidate]) -> Option<(u32, u32)> {
    let seed = tagged_hash("gonka/route", &[beacon, task]);
    let bit = 1u64.checked_shl(model)?;
    let weights: Vec<u64> = hosts.iter().map(|h| if h.serves & bit != 0 { h.weight } else { 0 }).collect();
    let executor = hosts[DrawStream::new(&seed, "executor").weighted_index(&weights)?].id;
    let others: Vec<u64> = hosts.iter().map(|h| u64::from(h.weight > 0 && h.id != executor)).collect();
    let intermediary =
        DrawStream::new(&seed, "intermediary").weighted_index(&others).map_or(executor, |i| hosts[i].id);
    Some((executor, intermediary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executors_follow_weight_among_servers() {
        let hosts = [
            Candidate { id: 0, weight: 30, serves: 0b01 },
            Candidate { id: 1, weight: 10, serves: 0b11 },
            Candidate { id: 2, weight: 60, serves: 0b10 },
        ];
        let mut counts = [0u32; 3];
        for i in 0u64..4000 {
            let task = tagged_hash("t", &[&i.to_le_bytes()]);
            let (e, m) = route(&[7; 32], &task, 0, &hosts).expect("servers exist");
            assert_ne!(e, m, "the intermediary is never the executor when another host exists");
            assert_ne!(e, 2, "host 2 does not serve model 0");
            counts[e as usize] += 1;
        }
        // 30 : 10 of the weight serving model 0.
        assert!((2850..3150).contains(&counts[0]), "{counts:?}");
        assert!(route(&[7; 32], &[1; 32], 5, &hosts).is_none(), "nobody serves model 5");
    }
}
