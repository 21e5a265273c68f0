//! Sprint PoW benches: model init and the batched forward pass.
use criterion::{Criterion, criterion_group, criterion_main};

fn forward(_c: &mut Criterion) {}

criterion_group!(benches, forward);
criterion_main!(benches);
