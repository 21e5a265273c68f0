//! Sprint PoW benches: model init and the batched forward pass, one worker.
//!
//! `cargo bench -p gonka-benches --bench pow`; the whole-machine figures with
//! their PyTorch reference come from `benches/run.sh`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gonka_kernels::config::{SEED_64, SMALL, TINY};
use gonka_kernels::forward::{ForwardScratch, Rope, forward_batch};
use gonka_kernels::model::Model;
use gonka_kernels::pow::{fill_input, node_seed};
use gonka_kernels::{ModelConfig, Precision};

const SEED: [u8; 32] = [7; 32];

fn init(c: &mut Criterion) {
    let mut g = c.benchmark_group("pow::init");
    g.sample_size(10);
    for cfg in [TINY, SMALL, SEED_64] {
        g.throughput(Throughput::Elements(cfg.param_count()));
        g.bench_function(BenchmarkId::from_parameter(format!("config={}", cfg.name)), |b| {
            b.iter(|| black_box(Model::generate(&cfg, &SEED)))
        });
    }
    g.finish();
}

fn inputs(cfg: &ModelConfig, batch: usize) -> Vec<f32> {
    let node = node_seed(&[1; 48]);
    let len = cfg.seq * cfg.dim;
    let mut x = vec![0f32; batch * len];
    let mut words = Vec::new();
    for i in 0..batch {
        fill_input(&SEED, &node, i as u64, &mut x[i * len..(i + 1) * len], &mut words);
    }
    x
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("pow::forward");
    for (cfg, batch) in [(TINY, 256), (SMALL, 64), (SMALL, 256)] {
        let model = Model::generate(&cfg, &SEED);
        let rope = Rope::new(cfg.seq, cfg.head_dim());
        let x = inputs(&cfg, batch);
        let mut out = vec![0f32; batch * cfg.vocab];
        let mut scratch = ForwardScratch::default();
        // Elements = nonces, so criterion prints nonces per second.
        g.throughput(Throughput::Elements(batch as u64));
        for (name, precision) in [("f32", Precision::F32), ("bf16", Precision::Bf16)] {
            let id = format!("config={} batch={batch} precision={name}", cfg.name);
            g.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter(|| forward_batch(&model, &rope, &x, batch, precision, &mut scratch, &mut out))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, init, forward);
criterion_main!(benches);
