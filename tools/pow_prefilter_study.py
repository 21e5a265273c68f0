#!/usr/bin/env python3
"""Pre-filter study of PoW v2 (docs/pow.md): does any cheaper or approximate
computation reproduce the exact output y? If y differs, the digest is an
independent hash and the approximation predicts nothing about the proof bit.

For each shortcut it reports the share of nonces whose y changes and the cost
of the shortcut in multiply-adds relative to the full pass. A pre-filter can
only be informative on the nonces whose y it reproduces exactly; when that
share is 0 its ranking selects proofs at the base rate, so its gain in proofs
per unit of work is at most 1 (its work reused) and below 1 otherwise.

Run from tools/ (it imports pow_v2_ref):
  ../benches/.venv/bin/python pow_prefilter_study.py --config small --nonces 512
  ../benches/.venv/bin/python pow_prefilter_study.py --config seed-64 --nonces 16
"""

import argparse
import time

import numpy as np

import pow_v2_ref as ref


def mm_f32_full(a, w):
    # One f32 GEMM over the whole K: not exact once partial sums pass 2^24.
    return np.rint(a.astype(np.float32) @ w.astype(np.float32).T).astype(np.int64)


def cost(cfg, stop=None, skip=0):
    d, f, V, T, L = cfg["d"], cfg["f"], cfg["V"], cfg["T"], cfg["L"]
    layer = T * (4 * d * d + 3 * d * f)
    full = (L - 1) * layer + (2 * d * d * T + 2 * d * d + 3 * d * f) + d * V
    run = (L if stop is None else stop) - skip
    return (run * layer + d * V) / full


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="small")
    p.add_argument("--nonces", type=int, default=512)
    args = p.parse_args()
    cfg, k, tab = ref.load_config(args.config)
    L = cfg["L"]
    if args.config == "seed-64":
        model = (ref.LazyLayers(ref.SEED, cfg), ref.gen_tensor(ref.SEED, cfg, L, "w_out", 7))
    else:
        model = ref.gen_model(ref.SEED, cfg)
    node = ref.node_seed(ref.PUBKEY)
    nonces = list(range(args.nonces))
    t0 = time.time()
    exact = ref.run_nonces(model, cfg, k, tab, ref.SEED, node, nonces, mm=ref.mm_f64, batch=16)
    print(f"# {args.config}, {len(nonces)} nonces; exact pass {time.time() - t0:.0f} s")
    variants = [
        ("stop after 0 layers (input only)", dict(stop=0), cost(cfg, stop=0)),
        (f"stop after {L // 2} layers", dict(stop=L // 2), cost(cfg, stop=L // 2)),
        (f"stop after {L - 1} layers", dict(stop=L - 1), cost(cfg, stop=L - 1)),
        ("skip layer 0", dict(skip={0}), cost(cfg, skip=1)),
        (f"skip layer {L // 2}", dict(skip={L // 2}), cost(cfg, skip=1)),
        (f"skip layer {L - 1} (last)", dict(skip={L - 1}), cost(cfg, skip=1)),
        ("int4 activations into the last down product", dict(ffn_bits={L - 1: 4}), None),
        ("int4 activations into every down product", dict(ffn_bits={l: 4 for l in range(L)}), None),
        ("6-bit activations into every down product", dict(ffn_bits={l: 6 for l in range(L)}), None),
        ("one head fewer per layer", dict(drop_heads=1), None),
    ]
    gemms = [("f32 GEMM over the whole K (no exact chunks)", mm_f32_full)]
    print("shortcut | cost (MACs, vs full) | nonces with y changed | proofs/work gain bound")
    for name, hooks, c in variants:
        y = ref.run_nonces(model, cfg, k, tab, ref.SEED, node, nonces, mm=ref.mm_f64, batch=16, hooks=hooks)
        changed = float(np.mean(np.any(y != exact, axis=1)))
        report(name, c, changed)
    for name, mm in gemms:
        y = ref.run_nonces(model, cfg, k, tab, ref.SEED, node, nonces, mm=mm, batch=16)
        changed = float(np.mean(np.any(y != exact, axis=1)))
        report(name, None, changed)
    print(f"# total {time.time() - t0:.0f} s")


def report(name, c, changed):
    cs = "n/a (same MACs, fewer bits)" if c is None else f"{c:.3f}"
    # With every output changed the digest is independent of the shortcut's:
    # ranking by it selects proofs at the base rate, and its cost is added.
    gain = "≤ 1 (independent digest)" if changed == 1.0 else f"informative on {100 * (1 - changed):.1f}% of nonces"
    print(f"{name} | {cs} | {100 * changed:.1f}% | {gain}", flush=True)


if __name__ == "__main__":
    main()
