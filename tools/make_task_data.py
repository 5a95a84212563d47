#!/usr/bin/env python3
"""Writes the seed data of the paper's four task families (summarize, classify, closed QA, coding) — 48 records
each, in the chat `messages` form with a `category` — to configs/data/<family>.jsonl, and the run configs that
migrate each of them from OpenAI, Anthropic or Gemini to SmolLM2 to configs/tasks/<family>.<provider>.yaml.
The records are built from small hand-written tables so every answer is right by construction.
Rerun: python3 tools/make_task_data.py   (stdlib only)"""
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "configs", "data")
TASKS = os.path.join(ROOT, "configs", "tasks")


def rec(family, i, user, answer):
    return {"id": f"{family}-{i:03d}", "category": family,
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def summarize(rng):
    systems = ["the billing service", "the login page", "the search index", "the mobile app", "the payment gateway",
               "the email relay", "the reporting dashboard", "the file upload service"]
    problems = [("returned errors", "error responses"), ("was slow", "high latency"), ("was unavailable", "an outage"),
                ("showed stale data", "stale data")]
    causes = ["an expired TLS certificate", "a full disk on the database host", "a bad configuration push",
              "a memory leak in the worker pool", "a dependency that timed out", "a surge of bot traffic"]
    fixes = [("rolled back the change", "rolled back"), ("renewed the certificate", "renewed the certificate"),
             ("added capacity", "added capacity"), ("restarted the workers", "restarted the workers")]
    out = []
    for i in range(48):
        s, (p, pn), c, (f, fs) = rng.choice(systems), rng.choice(problems), rng.choice(causes), rng.choice(fixes)
        mins = rng.choice([12, 25, 40, 55, 90, 130])
        day = rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"])
        text = (f"On {day} morning the on-call engineer noticed that {s} {p}. Customers wrote in within minutes, and the "
                f"status page was updated. The team traced the problem to {c}. After some discussion they {f}, and "
                f"service returned to normal {mins} minutes after the first alert. A follow-up review is planned.")
        out.append(rec("summarize", i, f"Summarize this incident report in one sentence:\n\n{text}",
                       f"{s[0].upper() + s[1:]} had {pn} for {mins} minutes on {day} because of {c}; the team {fs}."))
    return out


def classify(rng):
    labels = {
        "billing": ["I was charged twice for my {x} subscription this month.", "Can I get a refund for the {x} plan I cancelled?",
                    "My invoice for {x} shows the wrong VAT number.", "Why did the price of {x} go up without notice?"],
        "technical": ["The {x} app crashes every time I open the settings.", "I get error 502 when I upload files to {x}.",
                      "Sync between my phone and {x} stopped working yesterday.", "{x} is very slow since the last update."],
        "account": ["I can't reset my {x} password, the email never arrives.", "How do I change the email address on my {x} account?",
                    "Please delete my {x} account and all my data.", "Someone logged into my {x} account from another country."],
        "shipping": ["My {x} order has been stuck in transit for ten days.", "The {x} package arrived damaged.",
                     "Can I change the delivery address of my {x} order?", "I received the wrong item in my {x} parcel."],
    }
    products = ["Acme Cloud", "PhotoBox", "NoteSpace", "TrailGear", "HomeHub", "ReadMore"]
    out = []
    for i in range(48):
        label = ["billing", "technical", "account", "shipping"][i % 4]
        msg = rng.choice(labels[label]).format(x=rng.choice(products))
        out.append(rec("classify", i, "Classify this support message as billing, technical, account or shipping. Answer with "
                                      f"the label alone.\n\nMessage: {msg}", label))
    return out


def closed_qa(rng):
    items = [("the TrailGear 40 backpack", "1.2 kg", "40 litres", "recycled nylon", "Lyon"),
             ("the HomeHub mini speaker", "350 g", "8 hours of battery", "aluminium", "Tallinn"),
             ("the ReadMore e-reader", "190 g", "32 GB of storage", "matte plastic", "Osaka"),
             ("the PhotoBox frame", "600 g", "a 10-inch screen", "oak", "Porto"),
             ("the Acme kettle", "1.1 kg", "1.7 litres", "stainless steel", "Leeds"),
             ("the NoteSpace pen", "18 g", "a 0.5 mm tip", "brass", "Kraków")]
    out = []
    for i in range(48):
        name, weight, cap, mat, city = items[i % len(items)]
        price = rng.choice([19, 29, 49, 79, 129, 199])
        days = rng.choice([2, 3, 5, 7])
        ctx = (f"Product sheet: {name} weighs {weight}, offers {cap}, and is made of {mat}. It is assembled in {city}, "
               f"costs {price} euros and ships within {days} working days.")
        q, a = [("How much does it weigh?", weight), ("What is it made of?", mat), ("Where is it assembled?", city),
                ("How much does it cost?", f"{price} euros"), ("How fast does it ship?", f"within {days} working days")][i % 5]
        out.append(rec("closed_qa", i, f"Answer the question from the text alone.\n\n{ctx}\n\nQuestion: {q}", a[0].upper() + a[1:] + "."))
    return out


def coding(rng):
    tasks = [
        ("sum_list", "returns the sum of a list of numbers", "def sum_list(xs):\n    return sum(xs)"),
        ("max_of", "returns the largest element of a non-empty list", "def max_of(xs):\n    return max(xs)"),
        ("reverse_string", "returns a string reversed", "def reverse_string(s):\n    return s[::-1]"),
        ("count_vowels", "counts the vowels (a, e, i, o, u) in a string, ignoring case",
         "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')"),
        ("is_even", "tells whether an integer is even", "def is_even(n):\n    return n % 2 == 0"),
        ("factorial", "returns n! for a non-negative integer n",
         "def factorial(n):\n    result = 1\n    for k in range(2, n + 1):\n        result *= k\n    return result"),
        ("is_prime", "tells whether an integer is prime",
         "def is_prime(n):\n    if n < 2:\n        return False\n    k = 2\n    while k * k <= n:\n        if n % k == 0:\n            return False\n        k += 1\n    return True"),
        ("fibonacci", "returns the n-th Fibonacci number (fibonacci(0) == 0)",
         "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a"),
        ("unique", "returns the distinct elements of a list in their first order",
         "def unique(xs):\n    seen = set()\n    out = []\n    for x in xs:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n    return out"),
        ("word_count", "counts the words of a string separated by whitespace", "def word_count(s):\n    return len(s.split())"),
        ("celsius_to_fahrenheit", "converts a temperature from Celsius to Fahrenheit",
         "def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32"),
        ("is_palindrome", "tells whether a string reads the same backwards, ignoring case",
         "def is_palindrome(s):\n    t = s.lower()\n    return t == t[::-1]"),
        ("flatten", "flattens a list of lists by one level", "def flatten(xss):\n    return [x for xs in xss for x in xs]"),
        ("average", "returns the mean of a non-empty list of numbers", "def average(xs):\n    return sum(xs) / len(xs)"),
        ("capitalize_words", "capitalizes the first letter of every word in a string",
         "def capitalize_words(s):\n    return ' '.join(w[:1].upper() + w[1:] for w in s.split(' '))"),
        ("count_char", "counts how often a character occurs in a string", "def count_char(s, c):\n    return s.count(c)"),
    ]
    phrasings = ["Write a Python function `{n}` that {d}.", "In Python, implement `{n}`, a function that {d}.",
                 "Give me a Python function named `{n}` which {d}."]
    out = []
    for i in range(48):
        name, desc, code = tasks[i % len(tasks)]
        out.append(rec("coding", i, phrasings[i // len(tasks)].format(n=name, d=desc), f"```python\n{code}\n```"))
    return out


PROVIDERS = {
    "openai": ("provider: openai\n  model: gpt-4o-mini\n  api_key_env: OPENAI_API_KEY\n  price_in_per_mtok: 0.15\n"
               "  price_out_per_mtok: 0.60\n  requests_per_minute: 500\n  tokens_per_minute: 200000"),
    "anthropic": ("provider: anthropic\n  model: claude-3-5-haiku-latest\n  api_key_env: ANTHROPIC_API_KEY\n  price_in_per_mtok: 0.80\n"
                  "  price_out_per_mtok: 4.00\n  requests_per_minute: 50\n  tokens_per_minute: 40000"),
    "gemini": ("provider: gemini\n  model: gemini-1.5-flash\n  api_key_env: GEMINI_API_KEY\n  price_in_per_mtok: 0.075\n"
               "  price_out_per_mtok: 0.30\n  requests_per_minute: 1000\n  tokens_per_minute: 1000000"),
}
DESCRIPTIONS = {
    "summarize": "Summarize an incident report in one sentence: what broke, for how long, why, and what fixed it.",
    "classify": "Classify a customer support message as billing, technical, account or shipping; answer with the label alone.",
    "closed_qa": "Answer a question using only the product sheet given with it; answer briefly.",
    "coding": "Write a short, correct Python function for the task described, in a python code block.",
}
MAX_TOKENS = {"summarize": 96, "classify": 8, "closed_qa": 32, "coding": 192}


def config(family, provider):
    return f"""# Migrate the {family} task from {provider} to SmolLM2-135M-Instruct (written by tools/make_task_data.py; see
# configs/template.yaml for every key). Needs ${PROVIDERS[provider].split("api_key_env: ")[1].split(chr(10))[0]} in the environment.
run:
  dir: runs/{family}-{provider}
  coverage: configs/data/{family}.jsonl
  test_ratio: 0.25
  max_rounds: 4
  patience: 2
  budget_usd: 5
  samples: 4

student:
  model: models/SmolLM2-135M-Instruct.Q4_1.gguf
  train:
    rank: 16
    alpha: 32
    epochs: 3
    lr: 0.0005
    tokens_per_step: 1024
  infer:
    max_tokens: {MAX_TOKENS[family]}
    temperature: 0.7

service:
  {PROVIDERS[provider]}
  temperature: 0.7
  max_tokens: 2048
  concurrency: 8

task:
  description: {json.dumps(DESCRIPTIONS[family])}

synth:
  calls: 25
  pairs_per_call: 5

judge:
  judgments_per_answer: 3
  threshold: 90

report:
  local_monthly_usd: 60
  local_usd_per_hour: 0.10
"""


def main():
    rng = random.Random(7)
    os.makedirs(DATA, exist_ok=True)
    os.makedirs(TASKS, exist_ok=True)
    for family, make in (("summarize", summarize), ("classify", classify), ("closed_qa", closed_qa), ("coding", coding)):
        with open(os.path.join(DATA, family + ".jsonl"), "w") as f:
            for r in make(rng):
                f.write(json.dumps(r) + "\n")
        for provider in PROVIDERS:
            with open(os.path.join(TASKS, f"{family}.{provider}.yaml"), "w") as f:
                f.write(config(family, provider))


if __name__ == "__main__":
    main()
