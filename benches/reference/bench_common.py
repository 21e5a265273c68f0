"""What the reference inference benches share: the model and golden paths,
the prompts, medians, and how busy the rest of the machine was.

Imported by llama_cpp_bench.py and transformers_bench.py (each runs in its
own virtual environment; this module needs only the standard library).
"""
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = Path.home() / ".cache/gonka/models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GOLDEN = REPO / "kernels/tests/golden/smollm2.json"

# "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
# (the golden file's prompt chatml_capital); also the decode bench's prompt.
CHAT_IDS = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
CHAT_NAME = "chatml_capital"

# Text for the prefill / TTFT prompts: repeated until it gives enough tokens.
FILLER = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined several existing technologies into a single system for producing "
    "books. Movable metal type, oil-based inks and a wooden screw press allowed printers to "
    "make hundreds of identical copies far more quickly than scribes could write them by "
    "hand. By 1500, print shops had spread to more than 250 cities across Europe, and the "
    "price of books fell sharply. "
)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def summary(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def cpu_snapshot():
    """(wall s, machine busy CPU s from /proc/stat, this process's CPU s); None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    t = os.times()
    return time.perf_counter(), busy / hz, t.user + t.system


def other_load(start, end) -> dict:
    """How busy the rest of the machine was between two snapshots, in cores."""
    if not start or not end:
        return {}
    wall = end[0] - start[0]
    mine = (end[2] - start[2]) / wall
    total = (end[1] - start[1]) / wall
    return {"wall_s": wall, "machine_busy_cores": total, "this_process_cores": mine,
            "other_busy_cores": max(0.0, total - mine)}


def common_parser(doc: str, threads_help: str | None = None):
    """The options both benches take; each adds its own before parsing."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help=threads_help)
    ap.add_argument("--tokens", type=int, help="decode steps per run (N; default 128, quick 16)")
    ap.add_argument("--prompt-tokens", type=int,
                    help="prefill prompt length (P; default 256, quick 64)")
    ap.add_argument("--ttft-tokens", type=int, help="TTFT prompt length (default 64, quick 32)")
    ap.add_argument("--runs", type=int, help="repetitions per measurement (R; default 5, quick 2)")
    ap.add_argument("--batch-seqs", default="8,32",
                    help="comma-separated n_seq values for the batched decode; '' skips it")
    ap.add_argument("--batch-tokens", type=int, default=None,
                    help="decode steps per run in the batched decode (default: N, quick 8)")
    ap.add_argument("--quick", action="store_true",
                    help="small defaults, for a smoke test (explicit options still win)")
    ap.add_argument("--logits-check", action="store_true",
                    help="only evaluate the golden chat prompt and compare its logits")
    ap.add_argument("--golden", default=str(DEFAULT_GOLDEN))
    return ap


def parse_common(ap):
    """Parses, fills the defaults (`--quick` or full), and splits `--batch-seqs`."""
    args = ap.parse_args()
    defaults = (
        {"tokens": 16, "prompt_tokens": 64, "ttft_tokens": 32, "runs": 2, "batch_tokens": 8}
        if args.quick else
        {"tokens": 128, "prompt_tokens": 256, "ttft_tokens": 64, "runs": 5, "batch_tokens": None}
    )
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.batch_tokens is None:
        args.batch_tokens = args.tokens
    args.batch_seqs = [int(s) for s in args.batch_seqs.split(",") if s.strip()]
    return args
