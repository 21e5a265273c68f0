//! The public test vectors of spec v1 (`../shared/spec/vectors`), produced by
//! an independent implementation: weights and inputs bit-exact, distances
//! within 1e-4 in f32 mode.

use std::path::PathBuf;

use gonka_kernels::config::ModelConfig;
use gonka_kernels::encoding::{Hash32, unit};
use gonka_kernels::forward::{ForwardScratch, Rope, forward_batch};
use gonka_kernels::model::{Model, Tensor, generate_tensor, weight_key};
use gonka_kernels::pow::{self, PublicKey};
use gonka_kernels::{Precision, chacha};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where the vectors live: `$GONKA_SPEC_VECTORS`, else `shared/` beside the repository.
fn vectors_dir() -> PathBuf {
    if let Ok(p) = std::env::var("GONKA_SPEC_VECTORS") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/vectors")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("spec vectors missing at {}: {e} (set GONKA_SPEC_VECTORS)", path.display())
    });
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn hex32(v: &Value) -> Hash32 {
    let s = v.as_str().expect("hex string");
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

fn config_of(v: &Value) -> ModelConfig {
    let c = &v["config"];
    let name: ModelConfig = c["name"].as_str().expect("name").parse().expect("named config");
    let get = |k: &str| c[k].as_u64().expect("integer") as usize;
    assert_eq!(
        (name.layers, name.dim, name.heads, name.ffn, name.vocab, name.seq),
        (get("L"), get("d"), get("h"), get("f"), get("V"), get("T")),
        "named config {} differs from the vector file",
        name.name
    );
    name
}

fn sha_f32(values: impl IntoIterator<Item = f32>) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    hex::encode(h.finalize())
}

fn bf16s_as_f32(bits: &[u16]) -> impl Iterator<Item = f32> + '_ {
    bits.iter().map(|&b| f32::from_bits((b as u32) << 16))
}

struct Setup {
    v: Value,
    c: ModelConfig,
    seed: Hash32,
    node: Hash32,
}

fn setup(name: &str) -> Setup {
    let v = load(name);
    let c = config_of(&v);
    let seed = hex32(&v["sprint_seed"]);
    let pubkey: PublicKey =
        hex::decode(v["pubkey"].as_str().expect("pubkey")).expect("hex").try_into().expect("48 bytes");
    let node = pow::node_seed(&pubkey);
    assert_eq!(hex::encode(node), v["node_seed"].as_str().expect("node_seed"), "node_seed");
    Setup { v, c, seed, node }
}

fn check_keys(s: &Setup) {
    let k = &s.v["keys"];
    assert_eq!(
        hex::encode(weight_key(&s.seed, 0, Tensor::Wq)),
        k["weight_key_layer0_wq"].as_str().expect("key")
    );
    assert_eq!(
        hex::encode(weight_key(&s.seed, s.c.layers as u32, Tensor::WOut)),
        k["weight_key_w_out"].as_str().expect("key")
    );
    assert_eq!(hex::encode(pow::target_key(&s.seed)), k["target_key"].as_str().expect("key"));
    let n0 = k["first_nonce"].as_u64().expect("first_nonce");
    assert_eq!(
        hex::encode(pow::input_key(&s.seed, &s.node, n0)),
        k["input_key_first_nonce"].as_str().expect("key")
    );
    assert_eq!(
        hex::encode(pow::perm_key(&s.seed, &s.node, n0)),
        k["perm_key_first_nonce"].as_str().expect("key")
    );
}

fn check_weights(s: &Setup) {
    let mut all = Sha256::new();
    let mut expected = s.v["weights_tensor_sha256"].as_array().expect("tensor list").iter();
    let mut tensors: Vec<(u32, Tensor)> = Vec::new();
    for l in 0..s.c.layers as u32 {
        tensors.extend(Tensor::LAYER.iter().map(|&t| (l, t)));
    }
    tensors.push((s.c.layers as u32, Tensor::WOut));
    for (l, t) in tensors {
        let w = generate_tensor(&s.c, &s.seed, l, t);
        let want = expected.next().expect("one hash per tensor");
        let label = want["tensor"].as_str().expect("label");
        assert_eq!(sha_f32(bf16s_as_f32(&w)), want["sha256"].as_str().expect("sha"), "tensor {label}");
        for x in bf16s_as_f32(&w) {
            all.update(x.to_le_bytes());
        }
        if l == 0 || t == Tensor::WOut {
            let first = &s.v["weights_first8"][label]["bits"];
            let bits: Vec<String> = bf16s_as_f32(&w[..8]).map(|x| format!("{:08x}", x.to_bits())).collect();
            let want: Vec<&str> =
                first.as_array().expect("bits").iter().map(|b| b.as_str().expect("hex")).collect();
            assert_eq!(bits, want, "first 8 of {label}");
        }
    }
    assert_eq!(hex::encode(all.finalize()), s.v["weights_sha256"].as_str().expect("sha"), "weights_sha256");
}

fn check_target(s: &Setup) {
    let key = chacha::StreamKey::new(&pow::target_key(&s.seed));
    for (k, want) in s.v["target_unit_first8"].as_array().expect("list").iter().enumerate() {
        assert_eq!(unit(key.word(k as u64)) as f64, want.as_f64().expect("number"), "target unit {k}");
    }
    let t = pow::target(&s.seed, s.c.vocab);
    for (k, want) in s.v["target_first8"].as_array().expect("list").iter().enumerate() {
        let want = want.as_f64().expect("number");
        assert!((t[k] - want).abs() < 1e-15, "target {k}: {} vs {want}", t[k]);
    }
}

/// Runs every nonce of the file in one batch and compares inputs,
/// permutations, outputs and distances.
fn check_nonces(s: &Setup, precision: Precision, dist_tol: f64) -> f64 {
    let c = &s.c;
    let nonces = s.v["nonces"].as_array().expect("nonces");
    let model = Model::generate(c, &s.seed);
    let target = pow::target(&s.seed, c.vocab);
    let mut inputs = vec![0f32; nonces.len() * c.seq * c.dim];
    let mut words = Vec::new();
    for (i, n) in nonces.iter().enumerate() {
        let nonce = n["nonce"].as_u64().expect("nonce");
        let x = &mut inputs[i * c.seq * c.dim..(i + 1) * c.seq * c.dim];
        pow::fill_input(&s.seed, &s.node, nonce, x, &mut words);
        assert_eq!(
            sha_f32(x.iter().copied()),
            n["input_sha256"].as_str().expect("sha"),
            "input of nonce {nonce}"
        );
    }
    let mut out = vec![0f32; nonces.len() * c.vocab];
    forward_batch(
        &model,
        &Rope::new(c.seq, c.head_dim()),
        &inputs,
        nonces.len(),
        precision,
        &mut ForwardScratch::default(),
        &mut out,
    );
    let mut perm = vec![0u32; c.vocab];
    let mut worst = 0f64;
    for (i, n) in nonces.iter().enumerate() {
        let nonce = n["nonce"].as_u64().expect("nonce");
        pow::fill_permutation(&s.seed, &s.node, nonce, &mut perm, &mut words);
        let want_perm: Vec<u32> = n["perm_first8"]
            .as_array()
            .expect("perm")
            .iter()
            .map(|p| p.as_u64().expect("int") as u32)
            .collect();
        assert_eq!(&perm[..8], &want_perm[..], "permutation of nonce {nonce}");
        let y = &out[i * c.vocab..(i + 1) * c.vocab];
        if precision == Precision::F32 {
            for (k, want) in n["y_first8"].as_array().expect("y").iter().enumerate() {
                let want = want.as_f64().expect("number");
                let err = (y[k] as f64 - want).abs();
                assert!(err < 1e-4 * want.abs().max(1.0), "y[{k}] of nonce {nonce}: {} vs {want}", y[k]);
            }
        }
        let dist = pow::distance(y, &perm, &target);
        let want = n["dist"].as_f64().expect("dist");
        let err = (dist - want).abs();
        worst = worst.max(err);
        assert!(err < dist_tol, "dist of nonce {nonce}: {dist} vs reference {want} ({precision:?})");
    }
    worst
}

#[test]
fn tiny_vectors_f32_exact() {
    let s = setup("tiny");
    check_keys(&s);
    check_weights(&s);
    check_target(&s);
    let worst = check_nonces(&s, Precision::F32, 1e-4);
    println!("tiny: worst |dist − reference| = {worst:.2e}");
}

#[test]
fn small_vectors_f32_exact() {
    let s = setup("small");
    check_keys(&s);
    check_weights(&s);
    check_target(&s);
    let worst = check_nonces(&s, Precision::F32, 1e-4);
    println!("small: worst |dist − reference| = {worst:.2e}");
}

/// The bf16-activation mode is not bit-compatible, but stays within the
/// honest noise the spec reports (about 6e-4 on `small`).
#[test]
fn small_vectors_bf16_within_honest_noise() {
    let s = setup("small");
    let worst = check_nonces(&s, Precision::Bf16, 2e-3);
    println!("small bf16: worst |dist − reference| = {worst:.2e}");
}
