#!/usr/bin/env python3
"""Reference tokenizer for SmolLM2-135M-Instruct, written independently of the Rust one.

It reads the vocabulary, merges, token types and chat template from the GGUF
file, encodes a fixed list of strings with a plain byte-level BPE, renders a
few chats with the file's Jinja template, and writes the results to
kernels/tests/golden/tokenizer.json, which the Rust tests compare against.

Regenerate the golden file (from the repository root):

    python3 -m venv ~/.cache/gonka/venv
    ~/.cache/gonka/venv/bin/pip install gguf==0.19.0 numpy regex jinja2
    tools/fetch-model.sh
    ~/.cache/gonka/venv/bin/python tools/reference/tokenizer_reference.py

Options: --model PATH (default: $GONKA_MODELS or ~/.cache/gonka/models, then
the file name below) and --out PATH.

No tokenizer library is used: the BPE below repeatedly merges the adjacent
pair with the lowest merge rank, the textbook GPT-2 algorithm.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import regex
from gguf import GGUFReader
from jinja2.sandbox import ImmutableSandboxedEnvironment

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "kernels" / "tests" / "golden" / "tokenizer.json"
TOKEN_TYPE_CONTROL = 3

# The GPT-2 split, applied after every numeric character was cut out on its own.
GPT2_SPLIT = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
DIGIT_SPLIT = regex.compile(r"\p{N}|[^\p{N}]+")

CASES = [
    "",
    "Hello world",
    "Hello, world! How are you?",
    "The quick brown fox jumps over the lazy dog.",
    "12345",
    "3.14",
    "I have 2 apples and 10 oranges.",
    "Call 555-0123 or +1 (800) 555 0199.",
    "1,000,000.00 and $100.50 with 50% off",
    "I'm, you're, they've, she'll, he'd, it's, don't",
    "I'M YOU'RE 's 're",
    "a  b   c    d",
    "line1\nline2\n\nline4\n\n\n",
    "\ttab\tseparated\t\tvalues",
    "   leading and trailing   ",
    " ",
    "\n",
    "   \n\n   x",
    "a\r\nb\r\n",
    "café naïve résumé Zürich",
    "日本語のテキスト",
    "中文测试，你好！",
    "Привет, мир!",
    "مرحبا بالعالم",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧",
    "numerals ½ ² ٣ Ⅻ",
    "ＦＵＬＬＷＩＤＴＨ １２３",
    "\u00a0nbsp and\u3000ideographic space",
    'fn main() {\n    println!("{}", 42);\n}\n',
    "def f(x):\n\treturn x ** 2  # square\n",
    '<div class="x">a &amp; b</div>',
    "https://example.com/path?q=1&r=two#frag",
    "!!!???...,,,;;;",
    "snake_case camelCase kebab-case SCREAMING_CASE",
    "tokens:  'quoted' \"double\" `back`",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "bytes with no token: a\x04b !\x06! x\x13\x14y \U00040000.",
]

# Text with control-token spellings, encoded both ways.
SPECIAL_CASES = [
    "Hello <|im_start|> world <|im_end|>",
    "<|endoftext|>",
    "<|endoftext|><|im_start|>x<|im_end|>y",
    "<|im_start|user",
]

CHATS = [
    (
        [
            {"role": "user", "content": "Hello! What is 2+2?"},
            {"role": "assistant", "content": "2+2 is 4."},
        ],
        False,
    ),
    (
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a color."},
        ],
        True,
    ),
    ([{"role": "user", "content": "  leading spaces\n and a newline "}], True),
    ([], True),
]


def bytes_to_unicode():
    """GPT-2's table: printable bytes map to themselves, the rest to code points from 256 up."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ReferenceTokenizer:
    def __init__(self, tokens, merges, token_types):
        self.tokens = tokens
        self.ids = {t: i for i, t in enumerate(tokens)}
        assert len(self.ids) == len(tokens), "duplicate token strings"
        self.ranks = {}
        for rank, merge in enumerate(merges):
            left, right = merge.split(" ")
            self.ranks.setdefault((left, right), rank)
        self.byte_to_char = bytes_to_unicode()
        self.char_to_byte = {c: b for b, c in self.byte_to_char.items()}
        self.control = [t for t, ty in zip(tokens, token_types) if ty == TOKEN_TYPE_CONTROL]
        self.control_set = set(self.control)
        # Longest first, so that a control token that is a prefix of another never wins.
        alternatives = sorted(self.control, key=len, reverse=True)
        self.control_split = regex.compile("|".join(regex.escape(t) for t in alternatives))
        self.cache = {}

    def pre_tokenize(self, text):
        for chunk in DIGIT_SPLIT.findall(text):
            yield from GPT2_SPLIT.findall(chunk)

    def bpe(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        # SmolLM2's vocabulary has no token for 21 of the 256 bytes (six C0 controls and
        # bytes that valid UTF-8 never or almost never holds). With no unknown token the
        # original tokenizer drops such a symbol before merging, and so do we.
        parts = [c for c in piece if c in self.ids]
        while len(parts) > 1:
            best = None
            for i in range(len(parts) - 1):
                rank = self.ranks.get((parts[i], parts[i + 1]))
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, parts[i], parts[i + 1])
            if best is None:
                break
            _, left, right = best
            merged = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == left and parts[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.ids[p] for p in parts]
        self.cache[piece] = ids
        return ids

    def encode_plain(self, text):
        ids = []
        for piece in self.pre_tokenize(text):
            mapped = "".join(self.byte_to_char[b] for b in piece.encode("utf-8"))
            ids.extend(self.bpe(mapped))
        return ids

    def encode(self, text, special):
        if not special:
            return self.encode_plain(text)
        ids = []
        start = 0
        for m in self.control_split.finditer(text):
            ids.extend(self.encode_plain(text[start : m.start()]))
            ids.append(self.ids[m.group(0)])
            start = m.end()
        ids.extend(self.encode_plain(text[start:]))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            token = self.tokens[i]
            if token in self.control_set:
                out.extend(token.encode("utf-8"))
            else:
                out.extend(self.char_to_byte[c] for c in token)
        return out.decode("utf-8", errors="replace")


def field_value(reader, key):
    field = reader.fields[key]
    return field.contents()


def to_json_lines(golden):
    """JSON with one case or chat per line, so that a diff of the golden file reads well."""
    lines = []
    for key, value in golden.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join("  " + json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    models = Path(os.environ.get("GONKA_MODELS", Path.home() / ".cache" / "gonka" / "models"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=models / MODEL_FILE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    reader = GGUFReader(args.model)
    assert field_value(reader, "tokenizer.ggml.model") == "gpt2"
    assert field_value(reader, "tokenizer.ggml.pre") == "smollm"
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    merges = field_value(reader, "tokenizer.ggml.merges")
    token_types = field_value(reader, "tokenizer.ggml.token_type")
    template = field_value(reader, "tokenizer.chat_template")
    tok = ReferenceTokenizer(tokens, merges, token_types)

    cases = []
    for text in CASES:
        cases.append((text, False))
    for text in SPECIAL_CASES:
        cases.append((text, False))
        cases.append((text, True))

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    jinja = env.from_string(template)
    chats = []
    for messages, add_generation_prompt in CHATS:
        rendered = jinja.render(messages=messages, add_generation_prompt=add_generation_prompt)
        ids = tok.encode(rendered, True)
        assert tok.decode(ids) == rendered
        chats.append(
            {
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "rendered": rendered,
                "ids": ids,
            }
        )
        cases.append((rendered, True))

    encoded = []
    for text, special in cases:
        ids = tok.encode(text, special)
        encoded.append({"text": text, "special": special, "ids": ids, "decoded": tok.decode(ids)})

    golden = {
        "regenerate": "~/.cache/gonka/venv/bin/python tools/reference/tokenizer_reference.py",
        "model": MODEL_FILE,
        "vocab_size": len(tokens),
        "bos": int(field_value(reader, "tokenizer.ggml.bos_token_id")),
        "eos": int(field_value(reader, "tokenizer.ggml.eos_token_id")),
        "control_tokens": tok.control,
        "cases": encoded,
        "chats": chats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(to_json_lines(golden))
    print(f"wrote {len(encoded)} cases and {len(chats)} chats to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
