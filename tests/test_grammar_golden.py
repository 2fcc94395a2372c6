"""Fixed-seed constrained decoding pinned to the exact output recorded before the grammar package was
split out of ``abcgen/generation/constraints.py`` (the refactor must not change one token), with the rule
set of that time (``LEGACY_RULES``: no idiom rules, the model's own spaces), which stays available.

Three pins, recorded with the old 847-line module and kept byte for byte since:

* the tunes a tiny seeded random Llama writes under constraints (8 condition sets with pickups and
  forms, tight to roomy budgets, two seeds; a melody that left a repeat open; voice 2 under voice 1's
  bar template) -- ``tests/data/grammar_golden.json``;
* a digest of 300 random walks over the allowed tokens (every allowed set, every choice and the
  minimum tokens to finish at each step), so every mask the grammar computes is pinned, not only the
  ones a model happens to sample;
* the exact messages of the settings the grammar refuses.

Regenerate (only for an intended behaviour change, and say so in the commit)::

    python tests/test_grammar_golden.py > tests/data/grammar_golden.json
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from grammar_helpers import SETTINGS
from tiny_models import tiny_base_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from abcgen.errors import ConfigError
from abcgen.grammar import LEGACY_RULES, AbcConstraint, AbcLogitsProcessor, bar_template, music_vocabulary
from abcgen.tokenization.extend import build_music_tokenizer, ids_to_abc
from abcgen.tokenization.units import load_default_spec

F = Fraction
GOLDEN = Path(__file__).resolve().parent / "data" / "grammar_golden.json"

METERS = [("4/4", "1/8"), ("6/8", "1/8"), ("3/4", "1/8"), ("2/4", "1/16"), ("9/8", "1/8"), ("3/8", "1/8"),
          ("2/2", "1/4"), ("7/8", "1/16")]
BAD = [
    {"pickup": F(1)}, {"form": "AAAB", "num_bars": 8}, {"form": "AB", "num_bars": None}, {"key": "H#"},
    {"meter": F(0)}, {"num_bars": 0}, {"max_new_tokens": 0}, {"max_new_tokens": 4}, {"form": "ab"},
    {"form": "ABCDE", "num_bars": 4}, {"form": "AB", "open_repeat": True},
    {"meter": F(1, 64), "unit_length": F(1, 8)}, {"bar_lines": ["", "|", "|]"], "form": "AB"},
    {"bar_lines": ["", "|", "|]"], "num_bars": 3}, {"bar_lines": ["", "|x", "|]"]},
    {"bar_lines": ["|:", "|", "|]"]}, {"bar_lines": [""]}, {"bar_lines": ["", "|2", "|]"]},
]


def _tokenizer(folder: Path):
    return build_music_tokenizer(tiny_base_tokenizer(folder), load_default_spec(), ["<key=D_major>", "<meter=6/8>"])


def _model(tok) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


def _frac(text: str) -> Fraction:
    return Fraction(text)


def _generate(tok, model, prompts: list[str], constraints: list[AbcConstraint], seed: int, budget: int) -> list[str]:
    enc = tok(prompts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    processor = AbcLogitsProcessor(constraints, enc["input_ids"].shape[1])
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=1.5, max_new_tokens=budget,
                             logits_processor=LogitsProcessorList([processor]), pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)
    rows = out[:, enc["input_ids"].shape[1]:].tolist()
    return [ids_to_abc(tok, row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row)
            for row in rows]


def _constraint(tok, m: str, u: str, k: str, bars, pickup, form, budget: int, **kw: Any) -> AbcConstraint:
    kw.setdefault("rules", LEGACY_RULES)  # the pins are of the grammar before the idiom rules
    return AbcConstraint(tok, meter=_frac(m), unit_length=_frac(u), key=k, num_bars=bars, max_new_tokens=budget,
                         pickup=pickup, form=form, **kw)


def sampled_tunes(tok, model) -> dict[str, list[str]]:
    """Constrained tunes of the tiny random model for fixed seeds."""
    out: dict[str, list[str]] = {}
    prompts = [f"X:1\nM:{m}\nL:{u}\nK:{k}\n" for m, u, k, *_ in SETTINGS]
    for seed in (0, 1):
        budgets = [_constraint(tok, *s, 10_000).min_tokens_to_finish() + [0, 3, 40, 150][(seed + i) % 4]
                   for i, s in enumerate(SETTINGS)]
        constraints = [_constraint(tok, *s, b) for s, b in zip(SETTINGS, budgets, strict=True)]
        out[f"seed{seed}"] = _generate(tok, model, prompts, constraints, seed, max(budgets))
    # continuing a melody that opened a repeat; and no bar count (the model ends the tune)
    prompt = "X:1\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|"
    rows = [_constraint(tok, "3/4", "1/8", "D", 3, 0, None, 40, open_repeat=True),
            _constraint(tok, "3/4", "1/8", "D", None, 0, None, 40, open_repeat=True)]
    out["open_repeat"] = _generate(tok, model, [prompt] * 2, rows, 2, 40)
    free = [_constraint(tok, "4/4", "1/8", "G", None, 0, None, 60) for _ in range(3)]
    out["free"] = _generate(tok, model, ["X:1\nM:4/4\nL:1/8\nK:G\n"] * 3, free, 3, 60)
    # voice 2 under the bar template of voice 1 (seed 0, the AABB row with a pickup)
    voice1 = tok(out["seed0"][4], add_special_tokens=False)["input_ids"]
    template = bar_template(tok, voice1)
    c = _constraint(tok, "4/4", "1/8", "Edor", None, F(1, 8), None, len(voice1) + 10, bar_lines=template)
    out["template"] = [" ".join(template)] + _generate(tok, model, ["X:1\nM:4/4\nL:1/8\nK:Edor\nV:2\n"], [c], 4,
                                                      len(voice1) + 10)
    return out


def walk_digest(tok, walks: int = 300) -> str:
    """sha256 over random walks: per step the allowed ids, the minimum tokens to finish and the choice."""
    vocab = music_vocabulary(tok)
    rng = random.Random(7)
    digest = hashlib.sha256()
    for _ in range(walks):
        m, u = rng.choice(METERS)
        bar = _frac(m)
        form = rng.choice([None, None, None, "AABB", "AB", "ABAC", "AAB"])
        bars = rng.choice([1, 2, 3, 4, 8]) if form is None else rng.choice([4, 8, 16])
        bars = None if form is None and rng.random() < 0.25 else bars
        pickup = rng.choice([0, 0, F(1, 8), F(1, 4), bar - F(1, 16)])
        open_repeat = form is None and rng.random() < 0.15
        settings = (m, u, "C", bars, pickup, form)
        budget = _constraint(tok, *settings, 10_000, open_repeat=open_repeat).min_tokens_to_finish()
        budget += rng.choice([0, 1, 2, 5, 20, 80])
        c = _constraint(tok, *settings, budget, open_repeat=open_repeat)
        written = _walk(c, vocab, rng, digest)
        if rng.random() < 0.3:  # a second voice under this one's bar template
            template = bar_template(tok, written)
            probe = _constraint(tok, m, u, "C", None, pickup, None, 10_000, bar_lines=template)
            budget = rng.randint(probe.min_tokens_to_finish(), len(written) + 5)
            _walk(_constraint(tok, m, u, "C", None, pickup, None, budget, bar_lines=template), vocab, rng, digest)
    return digest.hexdigest()


def _walk(c: AbcConstraint, vocab: Any, rng: random.Random, digest: Any) -> list[int]:
    written: list[int] = []
    while not c.finished:
        allowed = c.allowed_ids()
        by_class: dict[int, list[int]] = {}
        for i in allowed:
            by_class.setdefault(vocab.cls[i], []).append(i)
        token = rng.choice(by_class[rng.choice(sorted(by_class))])
        digest.update(f"{allowed}|{c.min_tokens_to_finish()}|{c.bars_done}|{token};".encode())
        c.advance(token)
        written.append(token)
    digest.update(b"#")
    return written


def refusals(tok) -> list[str]:
    """The message of each refused setting."""
    messages = []
    for kw in BAD:
        settings = {"meter": F(1), "unit_length": F(1, 8), "key": "D", "num_bars": 2, "max_new_tokens": 100,
                    "rules": LEGACY_RULES}
        settings.update(kw)
        try:
            AbcConstraint(tok, **settings)
            messages.append("accepted")
        except ConfigError as exc:
            messages.append(f"{exc}")
    return messages


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    return _tokenizer(tmp_path_factory.mktemp("golden"))


def test_fixed_seed_tunes_are_unchanged(tok) -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = sampled_tunes(tok, _model(tok))
    for name, tunes in golden["tunes"].items():
        assert got[name] == tunes, name


def test_random_walk_masks_are_unchanged(tok) -> None:
    assert walk_digest(tok) == json.loads(GOLDEN.read_text(encoding="utf-8"))["walk_digest"]


def test_refusal_messages_are_unchanged(tok) -> None:
    assert refusals(tok) == json.loads(GOLDEN.read_text(encoding="utf-8"))["refusals"]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = _tokenizer(Path(folder))
        record = {"tunes": sampled_tunes(tokenizer, _model(tokenizer)), "refusals": refusals(tokenizer),
                  "walk_digest": walk_digest(tokenizer)}
    print(json.dumps(record, indent=1, ensure_ascii=False))
