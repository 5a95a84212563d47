#!/usr/bin/env python3
"""Reference values of the deterministic metrics from their usual implementations: ROUGE-L F1 from
`rouge-score` (no stemming) and chrF from `sacrebleu` (char order 6, beta 2), for hand-written pairs.
Writes tests/fixtures/metrics.jsonl. Rerun: python3 tools/make_metric_fixtures.py"""
import json
import os

from rouge_score import rouge_scorer
from sacrebleu.metrics import CHRF

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = [
    ("2024-05-03", "2024-05-03"),
    ("the cat sat on the mat", "the cat is on the mat"),
    ("Paris is the capital of France", "The capital of France is Paris"),
    ("completely different words here", "nothing in common at all"),
    ("a b c d e f g", "a c e g"),
    ("The quick brown fox jumps over the lazy dog", "A quick brown dog jumps over the lazy fox"),
    ("spam spam spam eggs", "spam eggs eggs"),
    ("def add(a, b): return a + b", "def add(x, y): return x + y"),
    ("positive", "negative"),
    ("It was a great movie, I loved it", "I loved the movie, it was great"),
]


def main():
    rs = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    chrf = CHRF()
    with open(os.path.join(ROOT, "tests", "fixtures", "metrics.jsonl"), "w") as f:
        for cand, ref in PAIRS:
            f.write(json.dumps({"candidate": cand, "reference": ref,
                                "rouge_l": rs.score(ref, cand)["rougeL"].fmeasure,
                                "chrf": chrf.sentence_score(cand, [ref]).score / 100.0}) + "\n")


if __name__ == "__main__":
    main()
