"""The unison penalty (``abcgen.grammar.unison``): which notes count as repeating the melody note before them,
that nothing is masked and the notes keep their probability, and the pipeline's / CLI's ``unison_penalty``."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from grammar_helpers import F, constraint, idiom_tokenizer, ids
from tiny_models import tiny_base_tokenizer, tiny_music_model_folder

import abcgen  # noqa: F401  -- registers the task
from abcgen.errors import ConfigError
from abcgen.generation.arguments import DEFAULT_UNISON_PENALTY
from abcgen.grammar import DEFAULT_RULES
from abcgen.grammar.processor import AbcLogitsProcessor
from abcgen.grammar.unison import UnisonPenalty
from abcgen.grammar.vocabulary import music_vocabulary
from abcgen.notation.lexer import lex_body
from abcgen.tokenization.extend import build_music_tokenizer
from abcgen.tokenization.units import load_default_spec

REQUEST = {"key": "D", "meter": "6/8", "rhythm": "jig", "bars": 8}


def _penalty(c, text: str, tok=None) -> float:  # noqa: ANN001
    """The bonus of the token whose text is ``text`` (a two-note token too: the tokenizer would split it)."""
    bonus = c.bonus()
    return 0.0 if bonus is None else float(bonus[c.vocab.texts.index(text)])


def test_a_repeated_note_loses_the_penalty_across_bar_lines_and_spaces() -> None:
    c = constraint(unison_penalty=2.0, num_bars=4)
    c.feed(ids("A"))
    assert _penalty(c, "A") == -2 and _penalty(c, "A2") == -2  # the same pitch, any length
    assert _penalty(c, "B") == 0 and _penalty(c, "a") == 0 and _penalty(c, "A,") == 0  # another letter or octave
    assert _penalty(c, " A") == -2 and _penalty(c, "AD") == -2  # a two-note token by its first note
    plain = constraint(num_bars=4)
    plain.feed(ids("A"))
    assert c.allowed_ids() == plain.allowed_ids()  # nothing is masked
    c.feed(ids("B3F4|"))
    assert _penalty(c, "F") == -2 and _penalty(c, "A") == 0  # a bar line does not break the melody
    c.feed(ids("z"))
    assert c.bonus() is None or float(c.bonus().abs().max()) == 0.0  # after a rest: no note to repeat
    assert constraint(num_bars=4).bonus() is None  # off by default


def test_grace_notes_chords_and_ornamented_repeats_are_exempt() -> None:
    tok = idiom_tokenizer()
    c = constraint(tokenizer=tok, unison_penalty=2.0, rules=DEFAULT_RULES, meter="6/8", num_bars=4)
    c.feed(ids("A{", tok))
    assert _penalty(c, "A", tok) == 0  # a grace note is not a melody note
    c.feed(ids("A}", tok))
    assert _penalty(c, "A", tok) == 0  # A{A}A: the ornamented repeat is the idiom (a cut)
    c.feed(ids("A", tok))
    assert _penalty(c, "A", tok) == -2  # the grace note did not replace the melody note
    c.feed(ids("B [", tok))
    assert _penalty(c, "B", tok) == 0  # the notes of a chord are not melody notes
    c.feed(ids("Bd]", tok))
    assert _penalty(c, "B", tok) == 0 and _penalty(c, "d", tok) == 0  # a chord leaves no melody note


def test_repeats_inside_a_two_note_token_are_counted() -> None:
    tok = build_music_tokenizer(tiny_base_tokenizer(Path(tempfile.mkdtemp(prefix="abcgen-unison-"))),
                                load_default_spec().texts() + ["AA", "AB"], ["<key=D_major>"])
    penalty = UnisonPenalty(music_vocabulary(tok), 1.5)
    texts = music_vocabulary(tok).texts
    aa, ab = texts.index("AA"), texts.index("AB")
    assert float(penalty.vector(None)[aa]) == -1.5 and float(penalty.vector(None)[ab]) == 0
    assert float(penalty.vector(("A", 0))[aa]) == -3.0 and float(penalty.vector(("B", 0))[ab]) == 0
    assert penalty.after(("G", 0), ab, True) == ("B", 0) and penalty.after(("G", 0), ab, False) == ("G", 0)


def test_the_processor_keeps_the_notes_probability_and_divides_the_repeat_odds() -> None:
    torch.manual_seed(0)
    base = constraint(rules=DEFAULT_RULES, meter="6/8", num_bars=4)
    scores = torch.randn(1, base.vocab.size)
    ids_in = torch.tensor([ids("A")])
    plain = AbcLogitsProcessor([base], 0)(ids_in, scores.clone()).softmax(-1)[0]
    weighted = AbcLogitsProcessor([constraint(rules=DEFAULT_RULES, meter="6/8", num_bars=4, unison_penalty=1.0)],
                                  0)(ids_in, scores.clone()).softmax(-1)[0]
    notes = base.vocab.notes
    assert float(weighted[notes].sum()) == pytest.approx(float(plain[notes].sum()), abs=1e-5)
    a, b = ids("A")[0], ids("B")[0]
    assert float(weighted[a] / weighted[b]) == pytest.approx(float(plain[a] / plain[b]) / math.e, rel=1e-4)


def _unison_share(penalty: float, seed: int) -> float:
    """The share of melodic steps that repeat a note, in random walks weighted by the bonus alone."""
    rng = random.Random(seed)
    same = steps = 0
    for _ in range(12):
        c = constraint(num_bars=4, max_new_tokens=120, unison_penalty=penalty)
        walk = []
        while not c.finished:
            allowed = c.allowed_ids()
            bonus = c.bonus()
            token = rng.choices(allowed, [math.exp(float(bonus[i])) if bonus is not None else 1.0 for i in allowed])[0]
            walk.append(token)
            c.advance(token)
        pitches = [(e.pitch.letter, e.pitch.octave) for e in lex_body("".join(c.vocab.texts[i] for i in walk[:-1]), F(1, 8), F(1))
                   if e.kind == "note" and e.pitch is not None]
        steps += len(pitches) - 1
        same += sum(a == b for a, b in zip(pitches, pitches[1:], strict=False))
    return same / steps


def test_random_walks_repeat_fewer_notes_and_stay_valid() -> None:
    assert _unison_share(4.0, 0) < 0.5 * _unison_share(0.0, 0)  # lex_body raised on nothing: every walk reads


# --- the pipeline and the CLI --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from transformers import pipeline

    return pipeline("abc-generation", model=str(tiny_music_model_folder(tmp_path_factory.mktemp("unison") / "m")))


def test_the_pipeline_penalty_changes_the_tunes_and_keeps_them_valid(pipe) -> None:  # noqa: ANN001
    default = pipe(**REQUEST, num_return_sequences=3, seed=1)
    explicit = pipe(**REQUEST, num_return_sequences=3, seed=1, unison_penalty=DEFAULT_UNISON_PENALTY)
    assert [t["abc"] for t in default] == [t["abc"] for t in explicit]
    strong = pipe(**REQUEST, num_return_sequences=3, seed=1, unison_penalty=DEFAULT_UNISON_PENALTY + 3.0)
    assert [t["abc"] for t in strong] != [t["abc"] for t in default] and all(t["valid"] for t in strong)
    legacy = pipe(**REQUEST, num_return_sequences=2, seed=1, unison_penalty=2.0, grammar="legacy")
    assert all(t["valid"] for t in legacy)
    assert len(pipe(**REQUEST, seed=1, constrained=False)) == 1  # the default steps aside unconstrained


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"unison_penalty": -1}, "unison_penalty=-1: give a penalty of 0 or more"),
    ({"unison_penalty": "high"}, "unison_penalty='high'"),
    ({"unison_penalty": float("inf")}, "unison_penalty=inf"),
    ({"unison_penalty": 1.0, "constrained": False}, "needs constrained=True"),
])
def test_a_bad_penalty_is_one_line_before_generating(pipe, kwargs: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as info:
        pipe(**REQUEST, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_cli_refuses_a_negative_penalty_in_one_line(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(tmp_path), "--out",
                          str(tmp_path / "out"), "--unison-penalty", "-2"], capture_output=True, text=True)
    assert run.returncode == 2 and "--unison-penalty" in run.stderr and "Traceback" not in run.stderr
