"""Constrained decoding: the state machine on hand-fed tokens, the budget, and 200 tunes sampled from an
untrained tiny Llama at temperature 1.5 that must all pass our checks and abc2midi."""

from __future__ import annotations

import os
import random
import time
from fractions import Fraction

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from grammar_helpers import SETTINGS, random_walk
from tiny_models import tiny_base_tokenizer, tiny_metaspace_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from abcgen.errors import ConfigError
from abcgen.generation.sampling import check_sample
from abcgen.grammar import (
    AbcConstraint,
    AbcLogitsProcessor,
    ConstraintViolation,
    music_vocabulary,
    parse_form,
    parse_unit,
)
from abcgen.grammar.rules import DEFAULT_RULES, LEGACY_RULES
from abcgen.grammar.vocabulary import (
    BROKEN,
    CHORD_CLOSE,
    CHORD_OPEN,
    CHORD_SYMBOL,
    DECORATION,
    GRACE_CLOSE,
    GRACE_OPEN,
    SLUR_CLOSE,
    SLUR_OPEN,
    TIE,
    TUPLET,
)
from abcgen.notation.bars import check_bars
from abcgen.notation.lexer import parse_fraction
from abcgen.notation.remi import abc2midi_check
from abcgen.notation.structure import is_truncated, repeat_problems
from abcgen.notation.tune import normalise_tune
from abcgen.tokenization.extend import build_music_tokenizer, ids_to_abc
from abcgen.tokenization.units import load_default_spec

F = Fraction


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    base = tiny_base_tokenizer(tmp_path_factory.mktemp("base"))
    return build_music_tokenizer(base, load_default_spec(), ["<key=D_major>", "<meter=6/8>"])


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def one(tok, text: str) -> int:
    found = ids(tok, text)
    assert len(found) == 1, (text, found)
    return found[0]


def texts(tok, c: AbcConstraint) -> set[str]:
    vocab = music_vocabulary(tok)
    return {vocab.texts[i] for i in c.allowed_ids()}


def make(tok, **kw) -> AbcConstraint:
    """A constraint with the rules these hand-fed tests pin (``LEGACY_RULES``; the idiom rules have their
    own tests, ``tests/test_grammar_<rule>.py``, and walk tests, ``tests/test_grammar_walks.py``)."""
    settings = {"meter": F(1), "unit_length": F(1, 8), "key": "D", "num_bars": 2, "max_new_tokens": 100,
                "rules": LEGACY_RULES}
    settings.update(kw)
    return AbcConstraint(tok, **settings)


# --- the token table ------------------------------------------------------------------------------------


def test_units_are_read_from_token_texts(tok) -> None:
    assert parse_unit("A2") == (1, F(2))
    assert parse_unit("^c'/2")[1] == F(1, 2)
    assert parse_unit("z4")[1] == F(4)
    assert parse_unit(":|[2") == (4, ":|2")
    for masked in ["e,", "C'2", "2", "/", "AB", "A2B", " |", "[CEG]", "x2", "Z", "K:", "[1", "^", '"4"', '"D.C."',
                   "!", ">>>", " {", "(1"]:
        assert parse_unit(masked)[0] == 0, masked
    # the idiom tokens are units of their own (offered only by the idiom rules)
    assert parse_unit("(3") == (TUPLET, (3, None, None)) and parse_unit("(3:2:3") == (TUPLET, (3, 2, 3))
    assert parse_unit(">") == (BROKEN, (F(3, 2), F(1, 2))) and parse_unit("<<") == (BROKEN, (F(1, 4), F(7, 4)))
    assert parse_unit('"Am"') == (CHORD_SYMBOL, "Am") and parse_unit('"A/C#"') == (CHORD_SYMBOL, "A/C#")
    assert parse_unit("~") == (DECORATION, "~") and parse_unit("!trill!") == (DECORATION, "!trill!")
    assert [parse_unit(text)[0] for text in "-{}[]()"] == [TIE, GRACE_OPEN, GRACE_CLOSE, CHORD_OPEN, CHORD_CLOSE,
                                                           SLUR_OPEN, SLUR_CLOSE]
    vocab = music_vocabulary(tok)
    assert vocab is music_vocabulary(tok)  # built once per tokenizer
    info = vocab.describe()
    assert {"|", "|]", "|:", ":|", "|1", ":|2"} <= set(info["bar_kinds"])
    assert "8" in info["durations"] and "1/2" in info["durations"]


# --- the state machine on hand-fed tokens ---------------------------------------------------------------


def test_bar_arithmetic_and_final_bar(tok) -> None:
    c = make(tok)
    assert "|" not in texts(tok, c) and "<|endoftext|>" not in texts(tok, c)
    c.feed(ids(tok, "A2B2c2"))
    allowed = texts(tok, c)
    assert {"A2", "d", "e/"} <= allowed and not {"A4", "d3", "|", "A2B", "2"} & allowed
    with pytest.raises(ConstraintViolation):
        c.advance(one(tok, "A4"))  # too long for the 2 units left
    c.advance(one(tok, "d2"))
    allowed = texts(tok, c)
    # ':|' would repeat from the start (legal ABC); no final bar line before the last bar
    assert {"|", "||", "|:", " ", ":|"} <= allowed and not {"|]", "A", "\n"} & allowed
    c.feed(ids(tok, "|\ne8"))
    # the last bar: only the final bar line, or a ':|' repeating the tune from the start
    assert texts(tok, c) & {"|", "|]", ":|", "||"} == {"|]", ":|"}
    c.advance(one(tok, "|]"))
    assert texts(tok, c) == {"<|endoftext|>"}
    c.advance(tok.eos_token_id)
    assert c.finished and set(c.allowed_ids()) == {tok.eos_token_id, tok.pad_token_id}
    c.advance(tok.pad_token_id)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    return tiny_base_tokenizer(tmp_path_factory.mktemp("base_small"))


def test_unfillable_remainders_are_masked(base) -> None:
    # Note lengths 1 (the base's single letters) and 3/2 only: in a 3-unit bar, A3/2 then A would leave
    # 1/2, which nothing fills, so A is masked there; at the start A is fine (1 + 1 + 1).
    small = build_music_tokenizer(base, ["A3/2", "B3/2", "|]"])
    assert music_vocabulary(small).durations == (F(1), F(3, 2))
    c = AbcConstraint(small, meter=F(3, 8), unit_length=F(1, 8), key="C", num_bars=2, max_new_tokens=50)
    assert {"A", "A3/2"} <= texts(small, c)
    c.advance(one(small, "A3/2"))
    assert "B3/2" in texts(small, c) and "A" not in texts(small, c)
    c.feed(ids(small, "B3/2|A"))
    assert "A" in texts(small, c) and "A3/2" not in texts(small, c)  # 2 left: 3/2 would leave 1/2
    with pytest.raises(ConfigError, match="no single-token notes that add up to a bar"):
        AbcConstraint(small, meter=F(1, 16), unit_length=F(1, 8), key="C", num_bars=2, max_new_tokens=50)


def test_repeats_and_endings(tok) -> None:
    c = make(tok, num_bars=2)
    c.advance(one(tok, "|:"))  # a repeat may open the body
    assert "|:" not in texts(tok, c)
    c.advance(one(tok, "A8"))
    allowed = texts(tok, c)
    assert {"|", ":|", "::"} <= allowed and not {"|1", "|:", "||", "|]"} & allowed  # |1 needs 2 more bars
    c.feed(ids(tok, "|B8"))
    assert texts(tok, c) & {"|", "|]", ":|", "||", "::"} == {":|"}  # the open repeat closes the tune

    c = make(tok, num_bars=4)
    c.feed(ids(tok, "|:A8"))
    assert "|1" in texts(tok, c)
    c.feed(ids(tok, "|1B8"))
    allowed = texts(tok, c)
    assert {":|2", "|"} <= allowed and not {":|", "::", "||", "|]", "|1"} & allowed
    c.feed(ids(tok, ":|2c8"))
    allowed = texts(tok, c)
    assert {"|", "||", "|:"} <= allowed and not {":|", ":|2", "|1"} & allowed
    c.feed(ids(tok, "||d8"))
    assert texts(tok, c) & {"|", "|]", ":|"} == {"|]", ":|"}  # ':|' repeats from the '||'

    c = make(tok, num_bars=1, open_repeat=True)  # continuing a melody prompt that opened a repeat
    assert "|:" not in texts(tok, c)
    c.advance(one(tok, "A8"))
    assert texts(tok, c) & {"|", "|]", ":|", "||", "::"} == {":|"}


def test_pickup_and_form(tok) -> None:
    c = make(tok, meter=F(3, 4), pickup=F(1, 8), num_bars=2)
    vocab = music_vocabulary(tok)
    assert all(vocab.durations[vocab.dur_index[i]] <= 1 for i in c.allowed_ids() if vocab.cls[i] == 1)
    assert not any(vocab.cls[i] == 4 for i in c.allowed_ids())  # no bar line before the pickup's notes
    c.advance(one(tok, "A"))
    assert {"|", "|:"} <= texts(tok, c)
    c.feed(ids(tok, "|d6|e6"))
    assert c.bars_done == 1 and texts(tok, c) & {"|", "|]", ":|"} == {"|]"}

    assert [s.end_bar for s in parse_form("AABB", 16)] == [8, 16]
    assert [s.repeated for s in parse_form("ABAC", 8)] == [False] * 4
    c = make(tok, num_bars=4, form="AABB")
    assert texts(tok, c) == {"|:"}  # the first section is a repeat
    c.feed(ids(tok, "|:A8|B8"))
    assert texts(tok, c) & {"|", "::", ":|", "||"} == {"::"}  # section boundary
    c.feed(ids(tok, "::c8"))
    assert texts(tok, c) & {"|", "::", ":|", "||", "|]"} == {"|"}
    c.feed(ids(tok, "|d8"))
    assert texts(tok, c) & {"|", "::", ":|", "||", "|]"} == {":|"}


def test_no_bars_requested_ends_with_a_final_bar(tok) -> None:
    c = make(tok, num_bars=None)
    c.feed(ids(tok, "|:A8"))
    assert texts(tok, c) & {":|", "|", "|]"} == {"|"}  # a part closes after a whole phrase (4 bars)
    c.feed(ids(tok, "|G8|F8|E8"))
    assert {":|", "|"} <= texts(tok, c) and "|]" not in texts(tok, c)
    c.advance(one(tok, ":|"))
    assert "<|endoftext|>" in texts(tok, c)  # may end after the repeat closes, or go on
    c.feed(ids(tok, "B8"))
    assert "|]" in texts(tok, c)


def test_line_never_starts_with_a_field_like_note(tok) -> None:
    # A 1-unit bar (M:1/4, L:1/4): a lone 'A' followed by ':|' would read as the header field 'A:'.
    c = make(tok, meter=F(1, 4), unit_length=F(1, 4), num_bars=2)
    allowed = texts(tok, c)
    assert "A" not in allowed and "z" not in allowed and "=c" in allowed and "\n" not in allowed


def test_budget_forces_the_shortest_completion(tok) -> None:
    c = make(tok, num_bars=2, max_new_tokens=5)  # A8 | B8 |] EOS
    assert c.min_tokens_to_finish() == 5
    assert all(t.endswith("8") for t in texts(tok, c))
    c.advance(one(tok, "A8"))
    # bar lines of equal cost (':|' closes a repeat from the start); no lone space or newline: no budget
    assert texts(tok, c) & {"|", "||", "|:", ":|", "::", " ", "\n"} == {"|", "||", "|:", ":|"}
    with pytest.raises(ConfigError, match="max_new_tokens=4 cannot hold 2 bars"):
        make(tok, num_bars=2, max_new_tokens=4)
    # AABB, 16 bars of 3/4 (one G6 a bar): |: + 16 x (note, bar line) with :: between the sections + EOS
    assert make(tok, num_bars=16, form="AABB", meter=F(3, 4)).min_tokens_to_finish() == 34
    with pytest.raises(ConfigError, match="at least 34 tokens"):
        make(tok, num_bars=16, max_new_tokens=33, form="AABB", meter=F(3, 4))


@pytest.mark.parametrize("kw", [
    {"pickup": F(1)}, {"form": "AAAB", "num_bars": 8}, {"form": "AB", "num_bars": None}, {"key": "H#"},
    {"meter": F(0)}, {"num_bars": 0},
])
def test_contradictory_settings_are_config_errors(tok, kw) -> None:
    with pytest.raises(ConfigError):
        make(tok, **kw)


# --- 200 sampled tunes ----------------------------------------------------------------------------------





def _check(abc: str, bars: int, meter: str) -> list[str]:
    """Every problem our checks and abc2midi find in one generated tune."""
    problems = check_sample(abc).problems  # the pipeline's own check: normalise, bars, repeats, truncation
    tune = normalise_tune(abc)
    report = check_bars(tune.events(), tune.unit_length, tune.meter)
    if report.num_bars != bars:
        problems.append(f"{report.num_bars} bars, not {bars}")
    if tune.meter != parse_fraction(meter) or tune.get("K") is None:
        problems.append("header changed")
    return problems + abc2midi_check(abc)  # any Error or Warning line (bar lengths included)


def _sample(tok, model, settings, seed: int, budgets: list[int], rules=DEFAULT_RULES):
    """Sample under the pipeline's default rules (the idioms, beams, cadence), the meter as written."""
    prompts = [f"X:1\nT:Test {i}\nM:{m}\nL:{u}\nK:{k}\n" for i, (m, u, k, *_rest) in enumerate(settings)]
    enc = tok(prompts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    constraints = [
        AbcConstraint(tok, meter=m, unit_length=parse_fraction(u), key=k, num_bars=bars, rules=rules,
                      max_new_tokens=budget, pickup=pickup, form=form)
        for (m, u, k, bars, pickup, form), budget in zip(settings, budgets, strict=True)
    ]
    processor = AbcLogitsProcessor(constraints, enc["input_ids"].shape[1])
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=1.5, max_new_tokens=max(budgets),
                             logits_processor=LogitsProcessorList([processor]), pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)
    return prompts, out[:, enc["input_ids"].shape[1]:], constraints


@pytest.mark.slow
def test_200_sampled_tunes_are_valid(tok, model) -> None:
    num_tunes, failures, total_bars, lengths = 0, [], 0, []
    for batch in range(25):
        settings = [SETTINGS[(batch + row) % len(SETTINGS)] for row in range(8)]
        # Budgets from tight (a few tokens over the minimum: the forced completion) to roomy.
        budgets = []
        for row, (m, u, _k, bars, pickup, form) in enumerate(settings):
            probe = AbcConstraint(tok, meter=m, unit_length=parse_fraction(u), key=_k, num_bars=bars,
                                  max_new_tokens=10_000, pickup=pickup, form=form)
            budgets.append(probe.min_tokens_to_finish() + [0, 3, 40, 150][(batch + row) % 4])
        prompts, generated, constraints = _sample(tok, model, settings, seed=batch, budgets=budgets)
        rows = zip(prompts, generated.tolist(), settings, budgets, constraints, strict=True)
        for prompt, row_ids, (meter, _unit, _key, bars, _pickup, _form), budget, constraint in rows:
            num_tunes += 1
            real = row_ids[: row_ids.index(tok.eos_token_id) + 1] if tok.eos_token_id in row_ids else row_ids
            lengths.append(len(real))
            abc = prompt + ids_to_abc(tok, real) + "\n"
            problems = []
            if tok.eos_token_id not in real or len(real) > budget:
                problems.append(f"no EOS within the budget of {budget}")
            if constraint.bars_done != bars:
                problems.append(f"the constraint counted {constraint.bars_done} bars")
            problems += _check(abc, bars, meter)
            total_bars += constraint.bars_done
            if problems:
                failures.append((abc, problems))
    assert num_tunes == 200
    assert not failures, f"{len(failures)} invalid tunes, e.g. {failures[0]}"
    states = sum(len(c._cache) for c in {id(c._cache): c for c in constraints}.values())
    print(f"\n200 constrained tunes valid ({total_bars} bars, {sum(lengths) / len(lengths):.1f} tokens a tune; "
          f"{states} cached masks for the last batch's settings)")


def test_sentencepiece_style_tokenizer(tmp_path) -> None:
    """A Metaspace base (token texts depend on what precedes them; its merges include 'e,')."""
    tok = build_music_tokenizer(tiny_metaspace_tokenizer(tmp_path / "sp"), load_default_spec(), ["<key=D_major>"])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4)
    model = LlamaForCausalLM(config).eval()
    for seed in range(2):
        prompts, generated, _ = _sample(tok, model, SETTINGS, seed, [300] * len(SETTINGS))
        for prompt, row, (meter, _u, _k, bars, _p, _f) in zip(prompts, generated.tolist(), SETTINGS, strict=True):
            abc = prompt + ids_to_abc(tok, row) + "\n"
            assert _check(abc, bars, meter) == [], abc


WALK_METERS = [("4/4", "1/8"), ("6/8", "1/8"), ("3/4", "1/8"), ("2/4", "1/16"), ("9/8", "1/8"), ("5/4", "1/8"),
               ("3/8", "1/8"), ("2/2", "1/4"), ("12/8", "1/8"), ("7/8", "1/16")]


@pytest.mark.slow
def test_random_walks_over_allowed_tokens_are_valid(tok) -> None:
    """1,500 tunes written by picking a random allowed token class, then a random token of it (so bar
    kinds, endings, newlines and EOS are tried as often as notes), under random settings and budgets
    from the minimum up, with ``LEGACY_RULES``; every one passes our checks, 300 of them abc2midi too.
    The idiom rules' walks are ``tests/test_grammar_walks.py``."""

    rng = random.Random(0)
    seen: set[str] = set()
    for walk in range(1500):
        meter, unit = rng.choice(WALK_METERS)
        bar = parse_fraction(meter)
        form = rng.choice([None, None, "AABB", "AB", "ABAC", "AAB"])
        bars = rng.choice([1, 2, 4, 8, 16]) if form is None else rng.choice([4, 8, 16])
        bars = None if form is None and rng.random() < 0.2 else bars
        pickup = rng.choice([0, 0, F(1, 8), F(1, 4), bar - F(1, 16)])
        probe = AbcConstraint(tok, meter=bar, unit_length=parse_fraction(unit), key="C", num_bars=bars,
                              max_new_tokens=10_000, pickup=pickup, form=form, rules=LEGACY_RULES)
        budget = probe.min_tokens_to_finish() + rng.choice([0, 1, 2, 5, 20, 80])
        c = AbcConstraint(tok, meter=bar, unit_length=parse_fraction(unit), key="C", num_bars=bars,
                          max_new_tokens=budget, pickup=pickup, form=form, rules=LEGACY_RULES)
        written = random_walk(c, rng)
        assert len(written) <= budget
        body = ids_to_abc(tok, written)
        seen.update(kind for kind in ("|1", ":|2", "::", "||", ":|", "|:", "\n", " ") if kind in body)
        abc = f"X:1\nM:{meter}\nL:{unit}\nK:C\n{body}\n"
        tune = normalise_tune(abc)
        events = tune.events()
        report = check_bars(events, tune.unit_length, tune.meter)
        problems = [str(p) for p in report.problems] + repeat_problems(events)
        if is_truncated(events, report.bars) or not body.rstrip().endswith(("|]", ":|", ":||")):
            problems.append("not closed")
        if bars is not None and report.num_bars != bars:
            problems.append(f"{report.num_bars} bars, not {bars}")
        if walk % 5 == 0:
            problems += abc2midi_check(abc)
        assert not problems, (abc, problems, budget)
    assert seen == {"|1", ":|2", "::", "||", ":|", "|:", "\n", " "}


def test_processor_expands_for_num_return_sequences(tok, model) -> None:
    prompt = "X:1\nM:6/8\nL:1/8\nK:D\n"
    enc = tok([prompt], add_special_tokens=False, return_tensors="pt")
    constraint = AbcConstraint(tok, meter=F(3, 4), unit_length=F(1, 8), key="D", num_bars=4, max_new_tokens=30,
                               rules=LEGACY_RULES)
    processor = AbcLogitsProcessor([constraint], enc["input_ids"].shape[1])
    torch.manual_seed(1)
    out = model.generate(**enc, do_sample=True, temperature=1.5, max_new_tokens=30, num_return_sequences=3,
                         logits_processor=LogitsProcessorList([processor]), pad_token_id=tok.pad_token_id)
    assert len(processor.constraints) == 3
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        abc = prompt + ids_to_abc(tok, row)
        tune = normalise_tune(abc)
        assert check_bars(tune.events(), tune.unit_length, tune.meter).num_bars == 4


class _Timed(AbcLogitsProcessor):
    """The processor with the time spent inside it counted."""

    seconds = 0.0
    calls = 0

    def __call__(self, input_ids, scores):
        start = time.perf_counter()
        out = super().__call__(input_ids, scores)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


@pytest.mark.slow
def test_overhead_vs_unconstrained(tok, model) -> None:
    """Measured, not asserted: ms per generated token at batch 8, without the processor, with the rules
    before the idioms (``LEGACY_RULES``) and with the default (idiom) rules; a fresh mask cache for the
    first run of each, so the 'cold' figures include building the masks."""
    prompt = "X:1\nM:4/4\nL:1/8\nK:D\n"
    enc = tok([prompt] * 8, add_special_tokens=False, return_tensors="pt")
    steps = 96

    def run(rules, seed: int) -> tuple[float, float]:
        kwargs = {}
        processor = None
        if rules is not None:
            constraints = [AbcConstraint(tok, meter="4/4", unit_length=F(1, 8), key="D", num_bars=16,
                                         max_new_tokens=steps, rules=rules) for _ in range(8)]
            processor = _Timed(constraints, enc["input_ids"].shape[1])
            kwargs["logits_processor"] = LogitsProcessorList([processor])
        torch.manual_seed(seed)
        start = time.perf_counter()
        with torch.no_grad():
            # No EOS for either run, so both write all `steps` tokens (the constrained rows write pad
            # after their EOS, which still goes through the processor).
            out = model.generate(**enc, do_sample=True, temperature=1.5, max_new_tokens=steps,
                                 pad_token_id=tok.pad_token_id, eos_token_id=None, **kwargs)
        elapsed = time.perf_counter() - start
        tokens = out.shape[1] - enc["input_ids"].shape[1]
        return elapsed / tokens * 1000, (processor.seconds / processor.calls * 1000 if processor else 0.0)

    cold = {name: run(rules, 0)[1] for name, rules in (("legacy", LEGACY_RULES), ("default", DEFAULT_RULES))}
    run(None, 0)
    plain, masked = [], {"legacy": [], "default": []}
    for seed in range(5):  # interleaved, best of 5: the machine is shared
        plain.append(run(None, seed)[0])
        masked["legacy"].append(run(LEGACY_RULES, seed))
        masked["default"].append(run(DEFAULT_RULES, seed))
    ms_plain = min(plain)
    report = [f"unconstrained {ms_plain:.3f}"]
    for name, runs in masked.items():
        ms_masked, ms_processor = min(m for m, _ in runs), min(p for _, p in runs)
        report.append(f"{name} rules {ms_masked:.3f} ({(ms_masked / ms_plain - 1) * 100:+.0f} %; processor "
                      f"{ms_processor:.3f} ms/step warm, {cold[name]:.3f} cold)")
    print("\nms/token at batch 8 (tiny 2-layer Llama, hidden 32, CPU, 1 thread): " + "; ".join(report))
    assert ms_plain > 0


# --- bar templates: later voices in step with voice 1 ---------------------------------------------------


def test_bar_template_forces_the_bar_lines_of_voice_one(tok) -> None:
    from abcgen.grammar import bar_template, split_bar_line

    voice1 = ids(tok, "|:A8|B4 B4::\nc8|d8:|") + [tok.eos_token_id, tok.pad_token_id]
    template = bar_template(tok, voice1)
    assert template == ["|:", "|", "::", "|", ":|"]  # opening bar line, then the one ending each bar
    assert bar_template(tok, ids(tok, "A|B8|1c8:|2d8|]")) == ["", "|", "|1", ":|2", "|]"]
    assert split_bar_line(music_vocabulary(tok), ":||:") == (":|", "|:")  # two tokens written together
    assert split_bar_line(music_vocabulary(tok), "|x") is None

    bars = {"|", "||", "|]", "|:", ":|", "::", "|1", ":|2", ":||", "|[1", ":|[2"}
    c = make(tok, num_bars=None, bar_lines=template)
    assert c.num_bars == 4 and texts(tok, c) == {"|:"}  # the opening repeat is forced
    c.advance(one(tok, "|:"))
    assert not texts(tok, c) & bars
    c.advance(one(tok, "e4"))
    assert not texts(tok, c) & bars  # the bar is not full yet
    c.advance(one(tok, "f4"))
    assert texts(tok, c) & bars == {"|"}  # voice 1's bar line, no other
    with pytest.raises(ConstraintViolation):
        c.advance(one(tok, "||"))
    c.feed(ids(tok, "|g8"))
    assert texts(tok, c) & bars == {"::"}
    c.feed(ids(tok, "::a8|b8"))
    assert texts(tok, c) & bars == {":|"}
    c.advance(one(tok, ":|"))
    assert texts(tok, c) == {"<|endoftext|>"}  # the template's last bar line ends the voice
    c.advance(tok.eos_token_id)
    assert c.finished and c.bars_done == 4

    # a pickup bar, first and second endings, and a bar line written as two tokens
    c = make(tok, meter=F(3, 4), pickup=F(1, 8), num_bars=None, bar_lines=["", "|:", ":||:", "|1", ":|2", "|]"])
    assert c.num_bars == 4
    # A | 3 x (G6 + bar line) | :| |: as two tokens, EOS
    assert c.min_tokens_to_finish() == 2 + 4 * 2 + 1 + 1
    c.feed(ids(tok, "A"))
    assert texts(tok, c) & bars == {"|:"}
    c.feed(ids(tok, "|:B6"))
    assert texts(tok, c) & bars == {":|"}
    c.advance(one(tok, ":|"))
    assert texts(tok, c) == {"|:"}  # the second token of ':||:' follows at once
    c.feed(ids(tok, "|:c6"))
    assert texts(tok, c) & bars == {"|1"}
    c.feed(ids(tok, "|1d6"))
    assert texts(tok, c) & bars == {":|2"}
    c.feed(ids(tok, ":|2e6"))
    assert texts(tok, c) & bars == {"|]"}
    c.feed(ids(tok, "|]") + [tok.eos_token_id])
    assert c.finished

    # two templates with the same settings do not share masks
    a, b = make(tok, bar_lines=["", "|", "|]"]), make(tok, bar_lines=["", "||", "|]"])
    for c, bar in ((a, "|"), (b, "||")):
        c.advance(one(tok, "A8"))
        assert texts(tok, c) & bars == {bar}


@pytest.mark.parametrize(("kw", "message"), [
    ({"bar_lines": ["", "|", "|]"], "form": "AB"}, "cannot be combined with form"),
    ({"bar_lines": ["", "|", "|]"], "num_bars": 3}, "num_bars=3 but bar_lines holds 2"),
    ({"bar_lines": ["", "|x", "|]"]}, r"bar_lines\[1\]='\|x'"),
    ({"bar_lines": ["", "", "|]"]}, r"bar_lines\[1\]=''"),
    ({"bar_lines": ["|:", "|", "|]"]}, "never closed"),
    ({"bar_lines": [""]}, "the bar line ending each bar"),
])
def test_bad_bar_templates_are_config_errors(tok, kw, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make(tok, **kw)


@pytest.mark.slow
def test_random_walks_of_several_voices_stay_in_step(tok) -> None:
    """300 tunes of 2-4 voices written by random walks: voice 1 under random settings, every later voice
    under voice 1's bar template with a random budget from the template's minimum up to voice 1's own
    length. All pass our checks (voices in step included) with identical bar lines; 60 pass abc2midi."""
    import re

    from abcgen.grammar import bar_template
    from abcgen.notation.voices import check_voices_in_step, split_voices

    rng = random.Random(1)

    def walk(c: AbcConstraint) -> list[int]:
        return random_walk(c, rng)

    for tune in range(300):
        meter, unit = rng.choice(WALK_METERS)
        bar, unit_length = parse_fraction(meter), parse_fraction(unit)
        form = rng.choice([None, None, "AABB", "AB", "ABAC"])
        bars = rng.choice([1, 2, 4, 8]) if form is None else rng.choice([4, 8])
        bars = None if form is None and rng.random() < 0.2 else bars
        pickup = rng.choice([0, 0, F(1, 8), bar - F(1, 16)])
        settings = {"meter": bar, "unit_length": unit_length, "key": "C", "pickup": pickup, "rules": LEGACY_RULES}
        probe = AbcConstraint(tok, **settings, num_bars=bars, form=form, max_new_tokens=10_000)
        budget = probe.min_tokens_to_finish() + rng.choice([0, 2, 20, 80])
        first = walk(AbcConstraint(tok, **settings, num_bars=bars, form=form, max_new_tokens=budget))
        template = bar_template(tok, first)
        voices = [first]
        for _ in range(rng.choice([1, 2, 3])):
            probe = AbcConstraint(tok, **settings, num_bars=None, max_new_tokens=10_000, bar_lines=template)
            assert probe.min_tokens_to_finish() <= len(first)  # voice 1's budget always holds its template
            budget = rng.randint(probe.min_tokens_to_finish(), len(first) + 5)
            c = AbcConstraint(tok, **settings, num_bars=None, max_new_tokens=budget, bar_lines=template)
            voices.append(walk(c))
            assert len(voices[-1]) <= budget and bar_template(tok, voices[-1]) == template
        header = f"X:1\nM:{meter}\nL:{unit}\n" + "".join(f"V:{k}\n" for k in range(1, len(voices) + 1)) + "K:C\n"
        abc = header + "".join(f"V:{k}\n{ids_to_abc(tok, v).strip()}\n" for k, v in enumerate(voices, 1))
        problems = check_sample(abc).problems
        problems += [str(m) for m in check_voices_in_step(abc)]
        lines = {tuple(re.findall(r"[|:\[\]]+[0-9]*", text)) for text in split_voices(abc)[1].values()}
        if len(lines) != 1:
            problems.append(f"bar lines differ between voices: {lines}")
        if tune % 5 == 0:
            problems += abc2midi_check(abc)
        assert not problems, (abc, problems)
