#!/usr/bin/env python3
"""The date task's checker (configs/demo.yaml, task.check.command): reads JSONL {"id", "prompt", "reference",
"answer"} on stdin and writes {"id", "score", "reason"} lines. It reads the date in the prompt itself, so it needs
no reference (task.check.reference_free): the loop uses it to drop synthetic pairs whose answer is the wrong date.
Score 1 when the answer is that date in ISO 8601 (YYYY-MM-DD), else 0 with the reason. Standard library only."""
import calendar
import json
import re
import sys

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))
DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
FORMS = [  # day month year, month day year (words); then numeric ISO
    re.compile(rf"\b{DAY}\s+(?:of\s+)?({MONTH_RE})\.?,?\s+(\d{{4}})\b", re.I),
    re.compile(rf"\b({MONTH_RE})\.?\s+{DAY},?\s+(\d{{4}})\b", re.I),
]


def date_in(prompt):
    """The one date the prompt names, as (y, m, d), or None when there is none or it is ambiguous."""
    text = prompt.split(":", 1)[1] if ":" in prompt else prompt  # after the instruction's "(YYYY-MM-DD):"
    found = set()
    for k, form in enumerate(FORMS):
        for g in form.findall(text):
            d, mon, y = (g[0], g[1], g[2]) if k == 0 else (g[1], g[0], g[2])
            found.add((int(y), MONTHS[mon.lower()], int(d)))
    if not found:
        iso = re.findall(r"\b(\d{4})-(\d{2})-(\d{2})\b", text)
        found = {(int(y), int(m), int(d)) for y, m, d in iso}
    if len(found) != 1:
        return None
    y, m, d = found.pop()
    if not (1 <= m <= 12 and 1 <= d <= calendar.monthrange(y, m)[1]):
        return None
    return y, m, d


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        item = json.loads(line)
        want = date_in(item["prompt"])
        answer = item["answer"].strip()
        if want is None:
            out = {"score": 0, "reason": "the prompt holds no single valid date this checker can read"}
        elif answer == "%04d-%02d-%02d" % want:
            out = {"score": 1, "reason": "the date in ISO 8601"}
        else:
            out = {"score": 0, "reason": "the answer should be %04d-%02d-%02d" % want}
        out["id"] = item["id"]
        print(json.dumps(out))


if __name__ == "__main__":
    main()
