//! The chain state machine end to end, without the network: hosts' agents
//! produce transactions, a block carries them, two replicas apply it and
//! must agree on every state root; a full epoch runs the DKG, the beacon,
//! the Sprint on `tiny`, validation and the new weights.

use gonka_engine::agent::{Agent, Behavior, ModelCache};
use gonka_engine::chain::types::{Block, BlockHeader, SignedTransaction, Transaction};
use gonka_engine::chain::{ApplyReport, Chain, ChainError, Genesis, GenesisHost, TxError};
use gonka_engine::crypto::HostKey;
use gonka_engine::crypto::beacon::SeedReveal;
use gonka_engine::crypto::cache::SigCache;
use gonka_engine::hosts::{HostId, Weight};
use gonka_engine::params::ChainParams;
use gonka_engine::proofs::components::{BatchCommitment, BatchKey, BatchStatus};
use gonka_engine::sprints::BeaconStatus;
use gonka_kernels::encoding::tagged_hash;

const SEED: u8 = 0;

fn key(i: usize) -> HostKey {
    HostKey::from_ikm(&tagged_hash("test/chain-host", &[&[SEED], &(i as u64).to_le_bytes()]))
}

/// Hosts with their agents, and two replicas that must never disagree.
struct Net {
    agents: Vec<Agent>,
    a: Chain,
    b: Chain,
    models: ModelCache,
    pending: Vec<SignedTransaction>,
}

impl Net {
    fn new(behaviors: Vec<Behavior>) -> Self {
        println!("chain test keys from seed {SEED}");
        let genesis = Genesis {
            params: ChainParams::tiny(),
            seed: [SEED; 32],
            hosts: (0..behaviors.len()).map(|i| GenesisHost::new(&key(i), 10)).collect(),
            accounts: Vec::new(),
            reserve: 0,
        };
        let cache = SigCache::default();
        let a = Chain::from_genesis(&genesis, cache.clone()).expect("valid genesis");
        let b = Chain::from_genesis(&genesis, cache).expect("valid genesis");
        let agents = behaviors
            .into_iter()
            .enumerate()
            .map(|(i, be)| {
                Agent::new(key(i), tagged_hash("test/entropy", &[&(i as u64).to_le_bytes()]), be, 2)
            })
            .collect();
        let mut net = Self { agents, a, b, models: ModelCache::default(), pending: Vec::new() };
        net.collect();
        net
    }

    /// Each agent's reaction to the state the replicas now hold.
    fn collect(&mut self) {
        for agent in &mut self.agents {
            let txs = agent.on_block(&mut self.a, &self.models);
            self.pending.extend(txs);
        }
    }

    fn block(&self, transactions: Vec<SignedTransaction>) -> Block {
        self.a.build_block(0, 0, transactions)
    }

    /// One block with `transactions` on both replicas.
    fn apply(&mut self, transactions: Vec<SignedTransaction>) -> ApplyReport {
        let block = self.block(transactions);
        let ra = self.a.apply_trusted(&block, 0).expect("block extends the tip");
        let rb = self.b.apply_trusted(&block, 0).expect("block extends the tip");
        assert_eq!(ra.state_root, rb.state_root, "replicas diverged at height {}", ra.height);
        ra
    }

    /// One block carrying everything the agents sent, then their reactions.
    fn step(&mut self) -> ApplyReport {
        let txs = std::mem::take(&mut self.pending);
        let report = self.apply(txs);
        self.collect();
        report
    }

    fn weights(&mut self) -> Vec<u64> {
        let world = self.a.world_mut_for_queries();
        let mut rows: Vec<(u32, u64)> =
            world.query::<(&HostId, &Weight)>().iter(world).map(|(i, w)| (i.0, w.0)).collect();
        rows.sort_unstable();
        rows.into_iter().map(|r| r.1).collect()
    }

    fn batches(&mut self, epoch: u64) -> Vec<(u32, BatchStatus, u64)> {
        let world = self.a.world_mut_for_queries();
        let mut rows: Vec<(u32, BatchStatus, u64)> = world
            .query::<(&BatchKey, &BatchStatus, &BatchCommitment)>()
            .iter(world)
            .filter(|(k, _, _)| k.epoch == epoch)
            .map(|(k, s, c)| (k.host, *s, c.proofs))
            .collect();
        rows.sort_unstable_by_key(|r| r.0);
        rows
    }
}

fn honest(n: usize) -> Vec<Behavior> {
    vec![Behavior::honest(2048); n]
}

#[test]
fn an_honest_epoch_runs_beacon_sprint_validation_and_sets_new_weights() {
    let mut net = Net::new(honest(4));
    let e = net.a.params().epoch_blocks;
    for _ in 0..e - 1 {
        let r = net.step();
        let failed: Vec<_> = r.receipts.iter().filter_map(|x| x.as_ref().err()).collect();
        assert!(failed.is_empty(), "honest transactions failed at height {}: {failed:?}", r.height);
        if r.height == 20 {
            assert!(matches!(net.a.beacon().status, BeaconStatus::Ready { .. }), "beacon by height 20");
        }
    }
    let batches = net.batches(0);
    assert_eq!(batches.len(), 4, "every host submitted a batch");
    assert!(batches.iter().all(|b| b.1 == BatchStatus::Accepted), "honest batches accepted: {batches:?}");
    let before = net.weights();
    assert_eq!(before, vec![10; 4], "genesis weights hold through epoch 0");
    net.step();
    let after = net.weights();
    let proofs: Vec<u64> = batches.iter().map(|b| b.2).collect();
    assert_eq!(after, proofs, "epoch 1 weights are the accepted proofs");
    assert_eq!(net.a.voting().epoch, 1);
    assert_eq!(net.a.voting().weights, proofs, "voting list follows the new weights");
}

#[test]
fn fabricated_inflated_and_duplicated_batches_earn_nothing() {
    let mut behaviors = honest(6);
    behaviors[1].fabricate_proofs = true;
    behaviors[2].inflate_count = true;
    behaviors[3].duplicate_nonces = true;
    let mut net = Net::new(behaviors);
    let e = net.a.params().epoch_blocks;
    for _ in 0..e {
        net.step();
    }
    let status: Vec<(u32, BatchStatus)> = net.batches(0).into_iter().map(|b| (b.0, b.1)).collect();
    assert!(status.contains(&(1, BatchStatus::Rejected)), "validators reject fabricated proofs: {status:?}");
    assert!(
        status.contains(&(2, BatchStatus::Rejected)),
        "a batch with fewer proofs than committed contradicts its claim: {status:?}"
    );
    assert!(
        status.contains(&(3, BatchStatus::Rejected)),
        "duplicate nonces contradict the claim: {status:?}"
    );
    for h in [0u32, 4, 5] {
        assert!(status.contains(&(h, BatchStatus::Accepted)), "honest host {h} accepted: {status:?}");
    }
    let w = net.weights();
    assert_eq!(&w[1..4], &[0, 0, 0], "cheaters hold no weight in epoch 1: {w:?}");
    assert!(w[0] > 0 && w[4] > 0 && w[5] > 0, "honest hosts hold weight: {w:?}");
}

#[test]
fn without_a_beacon_there_is_no_sprint_and_weights_carry_over() {
    let mut net = Net::new(honest(3));
    let e = net.a.params().epoch_blocks;
    for _ in 0..e {
        net.apply(Vec::new());
    }
    assert_eq!(net.weights(), vec![10; 3], "weights carried over");
    assert_eq!(net.a.voting().epoch, 1);
    // The new epoch's beacon starts over.
    assert_eq!(net.a.beacon().status, BeaconStatus::Pending);
}

#[test]
fn failed_transactions_leave_a_reason_and_change_nothing_else() {
    let mut net = Net::new(honest(3));
    let k = key(0);
    // A reveal before its window, a forged envelope, an unknown sender.
    let early = SignedTransaction::sign(&k, Transaction::SeedReveal(SeedReveal { epoch: 0, value: [1; 32] }));
    let mut forged = early.clone();
    forged.signature = SignedTransaction::sign(&key(1), forged.body.clone()).signature;
    let stranger =
        SignedTransaction::sign(&key(99), Transaction::SeedReveal(SeedReveal { epoch: 0, value: [1; 32] }));
    let r = net.apply(vec![early, forged, stranger]);
    assert!(matches!(r.receipts[0], Err(TxError::Invalid { .. })), "early reveal: {:?}", r.receipts[0]);
    assert!(matches!(r.receipts[1], Err(TxError::BadSignature { .. })), "forged: {:?}", r.receipts[1]);
    assert!(matches!(r.receipts[2], Err(TxError::UnknownSender { .. })), "stranger: {:?}", r.receipts[2]);
}

#[test]
fn registration_needs_a_proof_of_possession_and_happens_once() {
    let mut net = Net::new(honest(2));
    let newcomer = key(7);
    let good = Transaction::RegisterHost { proof_of_possession: newcomer.proof_of_possession() };
    let bad = Transaction::RegisterHost { proof_of_possession: key(9).proof_of_possession() };
    let r = net.apply(vec![
        SignedTransaction::sign(&newcomer, good.clone()),
        SignedTransaction::sign(&newcomer, good),
        SignedTransaction::sign(&key(8), bad),
    ]);
    assert!(r.receipts[0].is_ok(), "{:?}", r.receipts[0]);
    assert!(matches!(r.receipts[1], Err(TxError::Duplicate { .. })), "{:?}", r.receipts[1]);
    assert!(matches!(r.receipts[2], Err(TxError::Invalid { .. })), "{:?}", r.receipts[2]);
    assert_eq!(net.a.registry().len(), 3);
    assert_eq!(net.weights(), vec![10, 10, 0], "a new host starts without weight");
}

#[test]
fn a_block_on_another_state_is_refused() {
    let mut net = Net::new(honest(2));
    let mut block = net.block(Vec::new());
    block.header.state_root = [9; 32];
    assert!(matches!(net.a.apply_trusted(&block, 0), Err(ChainError::StateRootMismatch { .. })));
    let mut block = net.block(Vec::new());
    block.header.height += 1;
    assert!(matches!(net.a.apply_trusted(&block, 0), Err(ChainError::WrongHeight { .. })));
    let mut block = net.block(Vec::new());
    block.header.transactions_root = [1; 32];
    assert!(matches!(net.a.apply_trusted(&block, 0), Err(ChainError::TransactionsRoot { .. })));
    assert_eq!(net.a.next_height(), 0, "nothing was applied");
}

#[test]
fn equivocation_evidence_removes_the_voters_weight_once() {
    use gonka_engine::consensus::{Equivocation, Vote, VoteKind};
    let mut net = Net::new(honest(4));
    let (cheat, reporter) = (key(2), key(0));
    let a = Vote::signed(&cheat, 2, 0, 0, VoteKind::Prevote, Some([1; 32]));
    let b = Vote::signed(&cheat, 2, 0, 0, VoteKind::Prevote, Some([2; 32]));
    let evidence = Transaction::Equivocation(Equivocation { a: a.clone(), b });
    let not_evidence = Transaction::Equivocation(Equivocation { a: a.clone(), b: a });
    let r = net.apply(vec![
        SignedTransaction::sign(&reporter, not_evidence),
        SignedTransaction::sign(&reporter, evidence.clone()),
        SignedTransaction::sign(&key(1), evidence),
    ]);
    assert!(matches!(r.receipts[0], Err(TxError::Invalid { .. })), "same vote twice: {:?}", r.receipts[0]);
    assert!(r.receipts[1].is_ok(), "{:?}", r.receipts[1]);
    assert!(matches!(r.receipts[2], Err(TxError::Duplicate { .. })), "punished once: {:?}", r.receipts[2]);
    assert_eq!(net.a.voting().weights, vec![10, 10, 0, 10], "the equivocator votes with no weight");
    assert_eq!(net.a.voting().total_weight(), 30);
}

#[test]
fn chain_wire_formats_are_frozen() {
    use gonka_engine::chain::types::{BatchVerdict, FinalBlock};
    use gonka_engine::crypto::votes::VoteSet;
    use gonka_engine::crypto::wire::encode;
    // Change these hashes only with a new wire version.
    let tx = |body| SignedTransaction { sender: [3; 48], body, signature: [4; 96] };
    let header = BlockHeader {
        chain: [1; 32],
        height: 7,
        round: 1,
        parent: [2; 32],
        state_root: [3; 32],
        transactions_root: [4; 32],
        proposer: 5,
    };
    let verdicts = vec![BatchVerdict { host: 1, accept: true }, BatchVerdict { host: 3, accept: false }];
    let block = Block {
        header,
        transactions: vec![
            tx(Transaction::RegisterHost { proof_of_possession: [5; 96] }),
            tx(Transaction::ProofCommitment { epoch: 2, commitment: [6; 32], proofs: 9 }),
            tx(Transaction::ProofValidation { epoch: 2, verdicts }),
            tx(Transaction::SeedReveal(SeedReveal { epoch: 2, value: [7; 32] })),
        ],
    };
    let fb = FinalBlock {
        block: block.clone(),
        round: 2,
        finality: VoteSet { message: vec![8; 10], signers: vec![0b101], signature: [9; 96] },
    };
    let genesis = Genesis {
        params: ChainParams::tiny(),
        seed: [1; 32],
        hosts: Vec::new(),
        accounts: Vec::new(),
        reserve: 0,
    };
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("header", encode(&header), "c3b84bb9aca1dc165f8cce6166e9f49e7c0120eb4693d00ea1ee3ae5f121632f"),
        ("block", encode(&block), "73fe57357bb16dabadce726fed9d797655603a84e52165bd537884be478b5c11"),
        ("final block", encode(&fb), "87cff2a064e6c5417322c46680189dbc1a9d156ca7f4e4984a7a9964250dd064"),
        (
            "default parameters",
            encode(&ChainParams::default()),
            "8360db835ea7a6adb5131b5cb2f2f788c1d1405fabd19fd372e1e990a14d9312",
        ),
        ("genesis", encode(&genesis), "792e05fcbd9ecc4be06d80c21a2f6d337d5299d2d7ee948d7c9b3d51820e2641"),
    ];
    crate::assert_frozen(&cases);
}
