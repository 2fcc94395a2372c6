"""The unison penalty (``abcgen.grammar.melody``): which notes count as repeating the melody note before them,
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
from abcgen.generation.arguments import DEFAULT_INTERVAL_PRIOR, DEFAULT_UNISON_PENALTY
from abcgen.grammar import DEFAULT_RULES
from abcgen.grammar.melody import (
    MAX_STEP,
    NUM_STEPS,
    POOLED,
    MelodyPrior,
    interval_profiles,
    length_bonus_tables,
    length_profile_key,
    length_profiles,
    profile_for_rhythm,
    step_bonus,
    tune_lengths_in_order,
    tune_steps,
)
from abcgen.grammar.processor import AbcLogitsProcessor
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
    penalty = MelodyPrior(music_vocabulary(tok), 1.5)
    texts = music_vocabulary(tok).texts
    aa, ab = texts.index("AA"), texts.index("AB")
    assert float(penalty.vector(None)[aa]) == -1.5 and float(penalty.vector(None)[ab]) == 0
    assert float(penalty.vector((("A", 0), None, None))[aa]) == -3.0
    assert float(penalty.vector((("B", 0), 1, None))[ab]) == 0
    g = (("G", 0), None, F(1, 8))
    # A->B is one step up; AB at L:1/8 in 4/4: its last note is an eighth of the bar
    assert penalty.after(g, ab, True) == (("B", 0), 1, F(1, 8)) and penalty.after(g, ab, False) == g


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
    ({"interval_prior": 1.0, "constrained": False}, "interval_prior=1 is a rule of the grammar"),
])
def test_a_bad_penalty_is_one_line_before_generating(pipe, kwargs: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as info:
        pipe(**REQUEST, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_cli_refuses_a_negative_penalty_in_one_line(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(tmp_path), "--out",
                          str(tmp_path / "out"), "--unison-penalty", "-2"], capture_output=True, text=True)
    assert run.returncode == 2 and "--unison-penalty" in run.stderr and "Traceback" not in run.stderr


# --- the interval prior --------------------------------------------------------------------------------------------


def test_steps_are_counted_on_the_staff_and_broken_by_rests_and_chords() -> None:
    tune = "X:1\nM:4/4\nL:1/8\nK:D\n{g}A2 B c' ^c d z e [DF] f g |]\n"
    # A->B +1; B->c' +8 (a ninth: clipped to the octave-and-more bucket); c'->^c -7 (the sharp is the same step);
    # ^c->d +1; the rest breaks the line, e follows nothing; the chord breaks it again; f->g +1
    assert tune_steps(tune) == [(None, 1), (1, MAX_STEP), (MAX_STEP, -7), (-7, 1), (None, 1)]
    assert tune_steps("X:1\nK:D\n|: A B :| (]\n") is None  # the parser rejects it: not counted


def test_real_tunes_move_by_step_and_a_rare_rhythm_borrows_the_pooled_profile(real_tunes: list[str]) -> None:
    rows = [(abc, "reel") for abc in real_tunes[:100]] + [(abc, "rare") for abc in real_tunes[100:105]]
    profiles = interval_profiles(rows + [(abc, None) for abc in real_tunes[300:400]])
    assert profiles[POOLED]["tunes"] >= 200 and profiles["reel"]["tunes"] >= 95
    reel = profiles["reel"]
    assert sum(reel["steps"]) == pytest.approx(1, abs=1e-4)
    assert all(sum(row) == pytest.approx(1, abs=1e-4) and len(row) == NUM_STEPS for row in reel["after"])
    share = dict(zip(range(-MAX_STEP, MAX_STEP + 1), reel["steps"], strict=True))
    assert share[1] + share[-1] > 0.4 > share[0]  # O'Neill's: steps are most of the melody, repeats far fewer
    assert share[1] + share[-1] > 5 * (sum(share[s] for s in range(5, MAX_STEP + 1)) + share[-5])
    assert profile_for_rhythm(profiles, "reel") is reel
    assert profile_for_rhythm(profiles, "rare") is profiles[POOLED] and profile_for_rhythm(profiles, None) is profiles[POOLED]


def _profile(favoured_after_up: int) -> dict:
    """A made-up profile: every step equally likely, except that after a step up ``favoured_after_up`` is 4x."""
    flat = [1 / NUM_STEPS] * NUM_STEPS
    up = [4.0 if s - MAX_STEP == favoured_after_up else 1.0 for s in range(NUM_STEPS)]
    after = [list(flat) for _ in range(NUM_STEPS)]
    after[1 + MAX_STEP] = [v / sum(up) for v in up]
    return {"tunes": 50, "steps": flat, "after": after}


def test_the_bonus_of_a_note_depends_on_the_step_before_it() -> None:
    first, after = step_bonus(_profile(2), 1.0)
    assert max(first) == pytest.approx(min(first))  # a flat profile: no bonus without a previous step
    row = after[1 + MAX_STEP]
    assert row[2 + MAX_STEP] - row[1 + MAX_STEP] == pytest.approx(math.log(4), abs=1e-5)
    c = constraint(num_bars=4, interval_prior=(first, after), unison_penalty=0.5)
    c.feed(ids("A"))  # no step before A: the first row, flat; the unison penalty still counts
    assert _penalty(c, "c") == pytest.approx(_penalty(c, "B")) and _penalty(c, "A") == pytest.approx(_penalty(c, "B") - 0.5)
    c.feed(ids("B"))  # A->B was one step up: after it, a third up (B->d) is 4x as likely as a step (B->c)
    assert _penalty(c, "d") - _penalty(c, "c") == pytest.approx(math.log(4), abs=1e-5)
    c.feed(ids("z"))  # a rest: nothing before the next note
    assert c.bonus() is None or float(c.bonus().abs().max()) == 0.0
    plain = constraint(num_bars=4)
    plain.feed(ids("ABz"))
    assert c.allowed_ids() == plain.allowed_ids()  # nothing is masked
    with pytest.raises(ConfigError, match="interval_prior=-1"):
        step_bonus(_profile(2), -1)
    with pytest.raises(ConfigError, match="abcgen data profiles"):
        step_bonus({"tunes": 3, "steps": [1.0], "after": []}, 1.0)


@pytest.fixture(scope="module")
def profiled_pipe(tmp_path_factory: pytest.TempPathFactory, real_tunes: list[str]):  # noqa: ANN201
    """A tiny random model whose theory_profiles.json has the interval profile of real jigs and reels."""
    from transformers import pipeline

    from abcgen.grammar.melody import measure_profiles
    from abcgen.model_profiles import write_model_profiles

    folder = tiny_music_model_folder(tmp_path_factory.mktemp("interval") / "m")
    texts = real_tunes[:200]
    profiles = measure_profiles(texts, ["jig" if "6/8" in t else "reel" for t in texts])
    write_model_profiles(folder, profiles["modes"], profiles["rhythms"], profiles["intervals"], corpus="test")
    return pipeline("abc-generation", model=str(folder))


def test_against_the_pooled_profile_only_what_sets_the_rhythm_apart_counts() -> None:
    same_first, same_after = step_bonus(_profile(2), 2.0, reference=_profile(2))
    assert all(b == 0 for b in same_first) and all(b == 0 for row in same_after for b in row)  # nothing sets it apart
    first, after = step_bonus(_profile(2), 1.0, reference=_profile(-1))
    row = after[1 + MAX_STEP]  # after a step up, the rhythm takes a third up 4x, the pool a step down 4x
    assert row[2 + MAX_STEP] - row[-1 + MAX_STEP] == pytest.approx(2 * math.log(4), abs=1e-5)
    assert row[0 + MAX_STEP] == pytest.approx(row[3 + MAX_STEP])  # equally likely in both: no preference


def _evidence(tunes: list[dict], own: dict, pooled: dict) -> float:
    """Mean log-likelihood ratio per melodic step of ``tunes`` under the ``own`` vs the ``pooled`` interval
    profile: how much more the melodies move like the rhythm than like tunes at large."""
    total = steps = 0.0
    for tune in tunes:
        for previous, step in tune_steps(tune["abc"]):
            mine, theirs = ((p["steps"] if previous is None else p["after"][previous + MAX_STEP])[step + MAX_STEP]
                            for p in (own, pooled))
            total += math.log(mine) - math.log(theirs)
            steps += 1
    return total / steps


def test_the_pipeline_interval_prior_moves_melodies_towards_the_rhythm(profiled_pipe) -> None:  # noqa: ANN001
    from abcgen.generation.model_files import corpus_profiles

    intervals = corpus_profiles(profiled_pipe.model.name_or_path)["intervals"]
    assert intervals["jig"]["tunes"] >= 20  # REQUEST asks for a jig: it has a profile of its own
    plain = profiled_pipe(**REQUEST, num_return_sequences=4, seed=5, interval_prior=0.0)
    default = profiled_pipe(**REQUEST, num_return_sequences=4, seed=5)  # a folder with interval profiles: on
    assert profiled_pipe.default_interval_prior() == DEFAULT_INTERVAL_PRIOR > 0
    assert profiled_pipe.default_interval_prior(constrained=False) == 0.0
    assert [t["abc"] for t in default] == [t["abc"] for t in profiled_pipe(
        **REQUEST, num_return_sequences=4, seed=5, interval_prior=DEFAULT_INTERVAL_PRIOR)]
    assert [t["abc"] for t in default] != [t["abc"] for t in plain]
    guided = profiled_pipe(**REQUEST, num_return_sequences=4, seed=5, interval_prior=3.0)
    assert all(t["valid"] for t in guided)
    assert _evidence(guided, intervals["jig"], intervals["all"]) > _evidence(plain, intervals["jig"], intervals["all"])
    no_rhythm = {k: v for k, v in REQUEST.items() if k != "rhythm"}  # nothing to tell apart: not applied
    assert [t["abc"] for t in profiled_pipe(**no_rhythm, seed=5, interval_prior=3.0)] == \
        [t["abc"] for t in profiled_pipe(**no_rhythm, seed=5, interval_prior=0.0)]
    both = profiled_pipe(**REQUEST, num_return_sequences=2, seed=5, interval_prior=1.0, guidance_scale=2.0)
    assert all(t["valid"] for t in both)


def test_an_interval_prior_without_the_profile_names_the_command(pipe, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="no theory_profiles.json.*abcgen data profiles") as info:
        pipe(**REQUEST, interval_prior=1.0)  # the tiny model folder has no profiles at all
    assert "\n" not in str(info.value) and pipe.default_interval_prior() == 0.0  # no profiles: off by default
    from transformers import pipeline

    from abcgen.model_profiles import write_model_profiles

    folder = tiny_music_model_folder(tmp_path / "old")
    write_model_profiles(folder, {"major": {"profile": [1 / 12] * 12, "tunes": 30}}, {})  # written before intervals
    old = pipeline("abc-generation", model=str(folder))
    with pytest.raises(ConfigError, match="no interval profile.*--overwrite"):
        old(**REQUEST, interval_prior=1.0)
    with pytest.raises(ConfigError, match="rhythm_prior=1: .*no length profiles.*--overwrite"):
        old(**REQUEST, rhythm_prior=1.0)
    from abcgen.generation.model_files import corpus_profiles

    broken = tiny_music_model_folder(tmp_path / "broken")
    write_model_profiles(broken, {"major": {"profile": [1 / 12] * 12, "tunes": 30}}, {},
                         {"all": {"tunes": 3, "steps": [1.0], "after": []}})
    with pytest.raises(ConfigError, match="intervals of 'all': .*abcgen data profiles") as info:
        corpus_profiles(broken)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="interval_prior=-2: give a strength of 0 or more"):
        old(**REQUEST, interval_prior=-2)


# --- the rhythm's lengths (rhythm_prior) ---------------------------------------------------------------------------


def test_lengths_are_shares_of_the_bar_and_broken_signs_are_counted() -> None:
    reel_44 = "X:1\nM:4/4\nL:1/8\nK:D\nA>B c2 z d |]\n"
    reel_24 = "X:1\nM:2/4\nL:1/16\nK:D\nA>B c2 z d |]\n"
    # an eighth of a 4/4 bar and a sixteenth of a 2/4 bar are the same share: the corpus writes reels both ways
    expected = [(None, F(1, 8)), (F(1, 8), F(1, 8)), (F(1, 8), F(1, 4)), (None, F(1, 8))]
    assert tune_lengths_in_order(reel_44) == (expected, 1, "4/4") and tune_lengths_in_order(reel_24) == (expected, 1, "2/4")
    even = "X:1\nM:C\nL:1/8\nK:D\nABcd|]\n"
    profiles = length_profiles([(reel_44, "hornpipe"), (reel_24, "hornpipe"), (even, "reel")])
    # filed per rhythm and meter (C is 4/4): a 2/4 hornpipe is not measured against 4/4 tunes
    assert set(profiles) == {"hornpipe|4/4", "hornpipe|2/4", "reel|4/4", "all|4/4", "all|2/4"}
    assert profiles["hornpipe|4/4"]["broken"] == pytest.approx(1 / 4) and profiles["reel|4/4"]["broken"] == 0
    pooled = profiles["all|4/4"]
    assert pooled["tunes"] == 2 and sum(pooled["lengths"].values()) == pytest.approx(1, abs=1e-5)
    assert all(sum(row.values()) == pytest.approx(1, abs=1e-4) for row in pooled["after"].values())
    assert length_profile_key("jig", "6/8") == "jig|6/8" and length_profile_key("jig", "C|") == "jig|2/2"
    assert length_profile_key("air", "none") is None


def test_the_rhythm_lengths_weigh_each_length_after_the_one_before_and_the_broken_sign() -> None:
    even = {"tunes": 30, "lengths": {"1/8": 0.5, "1/4": 0.5}, "broken": 0.01,
            "after": {"1/8": {"1/8": 0.5, "1/4": 0.5}, "1/4": {"1/8": 0.5, "1/4": 0.5}}}
    swung = {**even, "broken": 0.2, "after": {"1/8": {"1/8": 0.8, "1/4": 0.2}, "1/4": {"1/8": 0.5, "1/4": 0.5}}}
    tables = length_bonus_tables(swung, even, 1.0)
    assert tables[3] == pytest.approx(math.log(20), abs=1e-5)  # a broken sign: 20x as common in the rhythm
    tok = idiom_tokenizer()
    c = constraint(tokenizer=tok, rules=DEFAULT_RULES, meter="4/4", num_bars=4, rhythm_lengths=tables)
    c.feed(ids("A", tok))  # an eighth: after it the rhythm takes another eighth 0.8/0.5, a quarter 0.2/0.5
    assert _penalty(c, "B", tok) - _penalty(c, "B2", tok) == pytest.approx(math.log(0.8 / 0.2), abs=1e-5)
    assert _penalty(c, ">", tok) == pytest.approx(math.log(20), abs=1e-5)
    c.feed(ids("B2", tok))  # after a quarter both profiles are alike: no preference
    assert _penalty(c, "c", tok) == pytest.approx(_penalty(c, "c2", tok))
    with pytest.raises(ConfigError, match="abcgen data profiles"):
        length_bonus_tables({"tunes": 3, "lengths": {}}, even, 1.0)
