#!/usr/bin/env python3
"""Writes tests/fixtures/chat.jsonl: conversations rendered by the models' own Jinja chat templates, the
way HF transformers renders them (jinja2 sandbox, trim_blocks, lstrip_blocks), as the reference for the
engine's template families. Templates: ../shared/data/tokenizers/{llama3,qwen3,gemma3} and the packaged
SmolLM2 GGUF (models/, fetched by tools/setup.sh). Rerun: python3 tools/make_chat_fixtures.py
"""
import json
import os

import jinja2.sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LLAMADUO_SHARED", os.path.join(ROOT, "..", "shared"))

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "  padded question \n"}, {"role": "assistant", "content": "An answer."},
     {"role": "user", "content": "And <b>more</b>?"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Convert 3rd of May 2024."},
     {"role": "assistant", "content": "2024-05-03"}],
    [{"role": "user", "content": "multi\nline\n\ncontent"}, {"role": "assistant", "content": " spaced answer "}],
]


# Mistral-7B-Instruct-v0.1's published template (the [INST] family), written out here: no tokenizer of that
# family ships in ../shared.
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
           "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")


def render(template, messages, add_gen, bos, eos):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_gen, bos_token=bos,
                                            eos_token=eos)


def main():
    templates = {}
    for name in ("llama3", "qwen3", "gemma3"):
        cfg = json.load(open(os.path.join(SHARED, "data", "tokenizers", name, "tokenizer_config.json")))
        bos = cfg.get("bos_token") or ""
        templates[name] = (cfg["chat_template"], bos if isinstance(bos, str) else bos["content"], cfg.get("eos_token"))
    smol = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(smol):
        import gguf
        r = gguf.GGUFReader(smol)
        templates["smollm2"] = (r.fields["tokenizer.chat_template"].contents(), "", "<|im_end|>")
    templates["mistral"] = (MISTRAL, "<s>", "</s>")
    n = 0
    with open(os.path.join(ROOT, "tests", "fixtures", "chat.jsonl"), "w") as f:
        for name, (tmpl, bos, eos) in templates.items():
            for conv in CONVERSATIONS:
                add_gen = conv[-1]["role"] == "user"
                try:
                    text = render(tmpl, conv, add_gen, bos, eos)
                except jinja2.exceptions.TemplateError:
                    continue  # e.g. mistral v0.1 refuses system messages
                n += 1
                f.write(json.dumps({"template": name, "jinja": tmpl, "messages": conv, "add_generation_prompt": add_gen,
                                    "text": text}) + "\n")
    print("wrote", n, "renderings")


if __name__ == "__main__":
    main()
