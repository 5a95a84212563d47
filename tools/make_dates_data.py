#!/usr/bin/env python3
"""Writes the small date-normalisation task used to show that fine-tuning works (README, "It learns"):
free-text dates -> ISO 8601, as chat records. configs/data/dates.{train,val}.jsonl (deterministic).
Rerun: python3 tools/make_dates_data.py"""
import calendar
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MONTHS = list(calendar.month_name)[1:]


def suffix(d):
    return "th" if 11 <= d <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")


def phrase(rng, y, m, d):
    name, short = MONTHS[m - 1], MONTHS[m - 1][:3]
    forms = [f"{d}{suffix(d)} of {name} {y}", f"{name} {d}, {y}", f"{short} {d} {y}", f"{d} {name} {y}",
             f"the {d}{suffix(d)} of {name}, {y}", f"{name} {d}{suffix(d)} {y}", f"{d} {short}. {y}"]
    return rng.choice(forms)


def records(rng, n, seen):
    out = []
    while len(out) < n:
        y, m = rng.randint(1950, 2035), rng.randint(1, 12)
        d = rng.randint(1, calendar.monthrange(y, m)[1])
        if (y, m, d) in seen:
            continue
        seen.add((y, m, d))
        text = phrase(rng, y, m, d)
        out.append({"id": f"date-{len(seen):04d}",
                    "messages": [{"role": "user", "content": f"Convert this date to ISO 8601 (YYYY-MM-DD): {text}"},
                                 {"role": "assistant", "content": f"{y:04d}-{m:02d}-{d:02d}"}]})
    return out


def main():
    rng, seen = random.Random(2024), set()
    os.makedirs(os.path.join(ROOT, "configs", "data"), exist_ok=True)
    # train/val: the fine-tuning demo; coverage: the migration demo's "team data" (configs/demo.yaml), disjoint dates
    for name, n in (("train", 240), ("val", 40), ("coverage", 48)):
        with open(os.path.join(ROOT, "configs", "data", f"dates.{name}.jsonl"), "w") as f:
            for r in records(rng, n, seen):
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
