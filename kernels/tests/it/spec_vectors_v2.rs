//! The test vectors of spec v2 (`kernels/tests/vectors/v2`), produced by the
//! independent numpy reference `tools/pow_v2_ref.py`: weights, inputs,
//! outputs, digests and the proof predicate, all bit for bit, on every kernel
//! this CPU runs.

use std::path::PathBuf;

use gonka_kernels::config::ModelConfig;
use gonka_kernels::encoding::Hash32;
use gonka_kernels::model::{Tensor, weight_key};
use gonka_kernels::pow::{self, PublicKey};
use gonka_kernels::v2::arith::Tables;
use gonka_kernels::v2::forward::forward_batch_until;
use gonka_kernels::v2::gemm::Kernel;
use gonka_kernels::v2::model::generate_tensor;
use gonka_kernels::v2::{self, Model, Scratch};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/vectors/v2/{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("v2 vectors missing at {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn hex32(v: &Value) -> Hash32 {
    hex::decode(v.as_str().expect("hex string")).expect("hex").try_into().expect("32 bytes")
}

fn config_of(v: &Value) -> ModelConfig {
    let c = &v["config"];
    let named: ModelConfig = c["name"].as_str().expect("name").parse().expect("named config");
    let get = |k: &str| c[k].as_u64().expect("integer") as usize;
    assert_eq!(
        (named.layers, named.dim, named.heads, named.ffn, named.vocab, named.seq),
        (get("L"), get("d"), get("h"), get("f"), get("V"), get("T")),
        "named config {} differs from the vector file",
        named.name
    );
    named
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().expect("list").iter().map(|x| x.as_i64().expect("integer")).collect()
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

fn check_constants_and_tables(s: &Setup) {
    let k = &s.v["constants"];
    let sh = v2::Shifts::for_config(&s.c).expect("named config runs v2");
    let get = |n: &str| k[n].as_u64().expect("constant") as u32;
    assert_eq!(
        [sh.s_r, sh.s_qkv, sh.s_sc, sh.s_o, sh.s_h, sh.s_d],
        [get("S_R"), get("S_QKV"), get("S_SC"), get("S_O"), get("S_H"), get("S_D")],
        "shifts of {}",
        s.c.name
    );
    let t = Tables::new(s.c.seq, s.c.head_dim());
    let tab = &s.v["tables"];
    assert_eq!(sha(&i32_bytes(&t.exp)), tab["exp_sha256"].as_str().expect("sha"), "exp table");
    let silu: Vec<i32> = t.silu.iter().map(|&v| i32::from(v)).collect();
    assert_eq!(sha(&i32_bytes(&silu)), tab["silu_sha256"].as_str().expect("sha"), "SiLU table");
    let flat = |v: &Value| -> Vec<i64> { v.as_array().expect("rows").iter().flat_map(ints).collect() };
    let cos: Vec<i64> = t.rope_cos.iter().map(|&v| i64::from(v)).collect();
    let sin: Vec<i64> = t.rope_sin.iter().map(|&v| i64::from(v)).collect();
    assert_eq!(cos, flat(&tab["rope_cos"]), "rotary cos table");
    assert_eq!(sin, flat(&tab["rope_sin"]), "rotary sin table");
    let threshold = v2::proof_threshold(v2::DEFAULT_NONCES_PER_PROOF);
    assert_eq!(hex::encode(threshold), s.v["proof_threshold"].as_str().expect("threshold"));
    assert_eq!(
        hex::encode(weight_key(&s.seed, 0, Tensor::Wq)),
        s.v["keys"]["weight_key_layer0_wq"].as_str().expect("key")
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
        assert_eq!(sha(&i8_bytes(&w)), want["sha256"].as_str().expect("sha"), "tensor {label}");
        all.update(i8_bytes(&w));
        if l == 0 || t == Tensor::WOut {
            let first: Vec<i64> = w[..8].iter().map(|&x| i64::from(x)).collect();
            assert_eq!(first, ints(&s.v["weights_first8"][label]), "first 8 of {label}");
        }
    }
    assert_eq!(hex::encode(all.finalize()), s.v["weights_sha256"].as_str().expect("sha"), "weights_sha256");
}

/// Inputs for `nonces`, checking each against its entry when one is given.
fn inputs_of(s: &Setup, nonces: &[u64], entries: Option<&[Value]>) -> Vec<i8> {
    let n = s.c.seq * s.c.dim;
    let mut inputs = vec![0i8; nonces.len() * n];
    for (i, &nonce) in nonces.iter().enumerate() {
        let x = &mut inputs[i * n..(i + 1) * n];
        v2::fill_input(&s.seed, &s.node, nonce, x);
        if let Some(e) = entries {
            assert_eq!(
                sha(&i8_bytes(x)),
                e[i]["input_sha256"].as_str().expect("sha"),
                "input of nonce {nonce}"
            );
        }
    }
    inputs
}

fn outputs(kernel: Kernel, model: &Model, inputs: &[i8], batch: usize) -> Vec<i32> {
    let mut out = vec![0i32; batch * model.config.vocab];
    let done =
        forward_batch_until(kernel, model, inputs, batch, &mut Scratch::default(), &mut out, &|| false);
    assert!(done, "an uncancelled forward pass completes");
    out
}

/// Every nonce entry: input, y, digest and predicate, on one kernel; the
/// batch is split unevenly to exercise edge tiles.
fn check_nonces(s: &Setup, model: &Model, kernel: Kernel) {
    let entries = s.v["nonces"].as_array().expect("nonces");
    let nonces: Vec<u64> = entries.iter().map(|e| e["nonce"].as_u64().expect("nonce")).collect();
    let inputs = inputs_of(s, &nonces, Some(entries));
    let v = s.c.vocab;
    let per = s.c.seq * s.c.dim;
    let mut y = Vec::with_capacity(nonces.len() * v);
    for chunk in (0..nonces.len()).collect::<Vec<_>>().chunks(37) {
        let (a, b) = (chunk[0], chunk[chunk.len() - 1] + 1);
        y.extend(outputs(kernel, model, &inputs[a * per..b * per], b - a));
    }
    for (i, e) in entries.iter().enumerate() {
        let nonce = nonces[i];
        let yi = &y[i * v..(i + 1) * v];
        let first: Vec<i64> = yi[..8].iter().map(|&x| i64::from(x)).collect();
        assert_eq!(first, ints(&e["y_first8"]), "y[0..8] of nonce {nonce} ({kernel:?})");
        assert_eq!(
            sha(&i32_bytes(yi)),
            e["y_sha256"].as_str().expect("sha"),
            "y of nonce {nonce} ({kernel:?})"
        );
        let dg = v2::digest(&s.seed, &s.node, nonce, yi);
        assert_eq!(hex::encode(dg), e["digest"].as_str().expect("digest"), "digest of nonce {nonce}");
        assert_eq!(v2::is_proof(&dg), e["is_proof"].as_bool().expect("bool"), "is_proof of nonce {nonce}");
    }
}

/// The reference's scan: exactly the listed nonces of the range are proofs.
fn check_scan(s: &Setup, model: &Model) {
    let scan = &s.v["scan"];
    let range = scan["nonces"].as_str().expect("range");
    let (a, b) = range.split_once('-').expect("A-B");
    let (a, b): (u64, u64) = (a.parse().expect("start"), b.parse().expect("end"));
    let want: Vec<(u64, String)> = scan["proofs"]
        .as_array()
        .expect("proofs")
        .iter()
        .map(|p| (p["nonce"].as_u64().expect("nonce"), p["digest"].as_str().expect("digest").to_owned()))
        .collect();
    let nonces: Vec<u64> = (a..=b).collect();
    let mut found = Vec::new();
    for chunk in nonces.chunks(64) {
        let y = outputs(Kernel::best(), model, &inputs_of(s, chunk, None), chunk.len());
        for (i, &nonce) in chunk.iter().enumerate() {
            let dg = v2::digest(&s.seed, &s.node, nonce, &y[i * s.c.vocab..(i + 1) * s.c.vocab]);
            if v2::is_proof(&dg) {
                found.push((nonce, hex::encode(dg)));
            }
        }
    }
    assert_eq!(found, want, "proofs among nonces {range}");
    println!(
        "{}: {} proofs in {} nonces (expected {:.1})",
        s.c.name,
        found.len(),
        nonces.len(),
        nonces.len() as f64 / 900.0
    );
}

fn check_all(name: &str) {
    let s = setup(name);
    check_constants_and_tables(&s);
    check_weights(&s);
    let model = Model::generate(&s.c, &s.seed).expect("named config runs v2");
    for kernel in [Kernel::Portable, Kernel::Vnni] {
        if kernel.is_available() {
            check_nonces(&s, &model, kernel);
        } else {
            println!("{name}: {} not available on this CPU, skipped", kernel.name());
        }
    }
    check_scan(&s, &model);
}

#[test]
fn tiny_v2_vectors_bit_exact() {
    check_all("tiny");
}

#[test]
fn small_v2_vectors_bit_exact() {
    check_all("small");
}

/// seed-64: the weights hash and the digests of nonces 0–3 from the numpy
/// reference (`tools/pow_v2_ref.py seed64`). About 0.9 GB of weights and a
/// few seconds of init: run with `--ignored` (and `--release`).
#[test]
#[ignore = "generates the 0.88 B-parameter seed-64 model"]
fn seed64_v2_vectors_bit_exact() {
    let v = load("seed-64");
    let tiny = setup("tiny");
    let (seed, node) = (tiny.seed, tiny.node);
    let c = gonka_kernels::config::SEED_64;
    let mut all = Sha256::new();
    for l in 0..=c.layers as u32 {
        let which: Vec<(u32, Tensor)> = if l == c.layers as u32 {
            vec![(l, Tensor::WOut)]
        } else {
            Tensor::LAYER.iter().map(|&t| (l, t)).collect()
        };
        for w in gonka_kernels::v2::model::generate_tensors(&c, &seed, &which) {
            all.update(i8_bytes(&w));
        }
    }
    assert_eq!(hex::encode(all.finalize()), v["weights_sha256"].as_str().expect("sha"), "seed-64 weights");
    let model = Model::generate(&c, &seed).expect("seed-64 runs v2");
    let entries = v["nonces"].as_array().expect("nonces");
    let nonces: Vec<u64> = entries.iter().map(|e| e["nonce"].as_u64().expect("nonce")).collect();
    let s = Setup { v: v.clone(), c, seed, node };
    let y = outputs(Kernel::best(), &model, &inputs_of(&s, &nonces, None), nonces.len());
    for (i, e) in entries.iter().enumerate() {
        let yi = &y[i * c.vocab..(i + 1) * c.vocab];
        assert_eq!(
            sha(&i32_bytes(yi)),
            e["y_sha256"].as_str().expect("sha"),
            "seed-64 y of nonce {}",
            nonces[i]
        );
        let dg = v2::digest(&seed, &node, nonces[i], yi);
        assert_eq!(
            hex::encode(dg),
            e["digest"].as_str().expect("digest"),
            "seed-64 digest of nonce {}",
            nonces[i]
        );
    }
}
