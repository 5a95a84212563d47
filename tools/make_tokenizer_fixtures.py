#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizers/<name>.jsonl: a corpus of varied strings with the token ids that HF
`tokenizers` (the reference) gives for the real tokenizers in ../shared/data/tokenizers/.

Each line: {"text", "ids" (specials parsed, post-processor on), "ids_plain" (special-token text treated as
text), "decoded" (decode of ids, specials kept)}. Rerun: python3 tools/make_tokenizer_fixtures.py
"""
import json
import os
import random
import sys

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LLAMADUO_SHARED", os.path.join(ROOT, "..", "shared"))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

WORDS = ("the quick brown fox jumps over lazy dog model token tokenizer migrate service local "
         "summary classify answer question Hello World it's we'll they've I'M don't YOU'RE "
         "naïve café résumé Zürich São Paulo").split()
SCRIPTS = [
    "日本語のテキストです。東京は大きい。", "中文分词测试，你好世界！", "한국어 문장입니다.", "Привет, как дела? Ёжик",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Γειά σου Κόσμε", "Ελληνικά ΑΒΓ",
    "Tiếng Việt có dấu", "Ça va? Où est l'hôtel?", "Straße groß ÄÖÜ", "ąęłńóśźż", "ﬁ ligature ﬂ",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "❤️", "🤖", "🧑🏿‍💻", "✨", "🔥🔥", "⚽", "☃", "🏳️‍🌈"]
CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; i++) { y[i] += a * x[i]; }",
    "const obj = {a: 1, 'b': [2, 3], \"c\": null};",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "#include <stdio.h>\nint main(void) {\n\treturn 0;\n}\n",
    "if x != None and y <= 3:\r\n\tpass\r\n",
    "<div class=\"a\">&nbsp;&lt;b&gt;</div>",
    "$ ls -la /usr/local/bin | grep -E '^d' && echo ok",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "λx. x + 1 ≤ ∞ ∑ ∫ √2 ≈ 1.414",
]
WHITESPACE = ["  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u2009", "    \n\n   ", "\x0b", "\f"]
SPECIALS = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|im_start|>",
            "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<bos>", "<eos>", "<start_of_turn>",
            "<end_of_turn>", "<pad>", "<mask>", "<unused5>", "[multimodal]", "<|reserved_special_token_3|>"]
NFD = ["e\u0301", "A\u030a", "n\u0303o", "u\u0308ber", "\u1100\u1161"]  # decomposed forms (NFC matters)


def corpus(n=2100, seed=1234):
    rng = random.Random(seed)
    out = []
    fixed = SCRIPTS + EMOJI + CODE + WHITESPACE + SPECIALS + NFD + [
        "", " ", "a", "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "2026-11-26",
        "   leading", "trailing   ", "x" * 300, " " * 40, "\n" * 12, "ab" * 100, "0" * 64, "Hello world",
        " Hello world", "Hello  world", "'s 't 're 've 'm 'll 'd", "HELLO'S", "can't won't", "…", "—", "‍",
    ]
    out.extend(fixed)
    pools = [WORDS, SCRIPTS, EMOJI, CODE, WHITESPACE, SPECIALS, NFD]
    weights = [6, 2, 1, 1, 2, 1, 1]
    while len(out) < n:
        k = rng.randint(1, 12)
        parts = []
        for _ in range(k):
            pool = rng.choices(pools, weights)[0]
            parts.append(rng.choice(pool))
            r = rng.random()
            if r < 0.15:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 15))))
            elif r < 0.3:
                parts.append(rng.choice([" ", "  ", "\n", ", ", ". ", "! ", "?", "\t", ":", ";", "-", "_"]))
        sep = rng.choice(["", " ", " ", "\n"])
        out.append(sep.join(parts))
    return out[:max(n, len(fixed))]


def make_metaspace(path, texts):
    """A small SentencePiece-style BPE with the Metaspace pre-tokenizer (the Mistral / Llama 2 tokenizer.json
    layout: ▁ for spaces, prepended to the first word, byte fallback), trained here on the corpus."""
    from tokenizers import Tokenizer as T, decoders, models, pre_tokenizers, trainers
    tok = T(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="first"), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts[200:], trainer)
    from tokenizers.processors import TemplateProcessing
    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tok.save(path)


def main():
    os.makedirs(OUT, exist_ok=True)
    texts = corpus()
    make_metaspace(os.path.join(OUT, "metaspace.tokenizer.json"), texts)
    for name in ("llama3", "qwen3", "gemma3", "metaspace"):
        path = os.path.join(SHARED, "data", "tokenizers", name, "tokenizer.json")
        if name == "metaspace":
            path = os.path.join(OUT, "metaspace.tokenizer.json")
        tok = Tokenizer.from_file(path)
        plain = Tokenizer.from_file(path)
        plain.encode_special_tokens = True
        with open(os.path.join(OUT, name + ".jsonl"), "w", encoding="utf-8") as f:
            for t in texts:
                ids = tok.encode(t, add_special_tokens=True).ids
                ids_plain = plain.encode(t, add_special_tokens=False).ids
                rec = {"text": t, "ids": ids, "ids_plain": ids_plain,
                       "decoded": tok.decode(ids_plain, skip_special_tokens=False)}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        print(f"{name}: {len(texts)} strings", file=sys.stderr)


if __name__ == "__main__":
    main()
