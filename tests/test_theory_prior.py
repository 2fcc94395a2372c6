"""The theory prior (``abcgen.grammar.tonality`` and the ``prior`` rule): pitch profiles per mode and note
lengths per rhythm learned from real tunes, the logit bonus they give each note, the pipeline's
``theory_prior`` / ``rhythm_prior`` and the command that writes ``theory_profiles.json``."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from grammar_helpers import F, constraint, ids, random_walk
from tiny_models import tiny_music_model_folder

import abcgen  # noqa: F401  -- registers the task
from abcgen.errors import ConfigError
from abcgen.generation.arguments import DEFAULT_RHYTHM_PRIOR, DEFAULT_THEORY_PRIOR
from abcgen.grammar import DEFAULT_RULES
from abcgen.grammar.melody import MIN_INTERVAL_TUNES, measure_profiles
from abcgen.grammar.tonality import (
    MIN_MODE_TUNES,
    MIN_RHYTHM_TUNES,
    MODE_SCALES,
    bonus_for_length,
    length_bonus,
    mode_profiles,
    prior_bonus,
    profile_for,
    profile_for_rhythm,
    rhythm_profiles,
    tune_lengths,
    tune_profile,
)
from abcgen.model_profiles import PROFILES_FILE, read_model_profiles, write_model_profiles
from abcgen.notation.lexer import lex_body

REQUEST = {"key": "D", "meter": "6/8", "rhythm": "jig", "bars": 8}


@pytest.fixture(scope="module")
def profiles(real_tunes: list[str]) -> dict:
    return mode_profiles(real_tunes[:300])  # the O'Neill's and Ryan's tunes of the sample


def test_profiles_of_real_tunes_put_time_on_the_scale(profiles: dict) -> None:
    major = profiles["major"]
    assert major["tunes"] > 200 and math.isclose(sum(major["profile"]), 1.0, abs_tol=1e-4)
    p = major["profile"]
    on_scale = sum(p[i] for i in MODE_SCALES["major"])
    assert on_scale > 0.97  # O'Neill's and Ryan's reels and jigs barely leave the scale
    assert p[0] > p[1] and p[7] > p[6] and p[4] > p[3]  # tonic over b2, fifth over the tritone, major third
    minor = profiles["minor"]["profile"]
    assert minor[3] > minor[4]  # minor third over major third
    for mode in profiles:
        assert mode in MODE_SCALES


def test_one_tune_is_measured_from_its_own_tonic() -> None:
    mode, shares = tune_profile("X:1\nM:4/4\nL:1/8\nK:G\nG2B2 d2g2|G8|]\n")
    assert mode == "major"
    assert shares[0] == pytest.approx(12 / 16) and shares[4] == pytest.approx(2 / 16) and shares[7] == pytest.approx(2 / 16)
    mode, shares = tune_profile("X:1\nM:4/4\nL:1/8\nK:Ador\nA2c2 e2f2|A8|]\n")
    assert mode == "dorian" and shares[9] == pytest.approx(2 / 16)  # f is f# in A dorian: the major sixth
    assert tune_profile("X:1\nM:4/4\nL:1/8\nK:Ador\nA2c2 e2=f2|A8|]\n")[1][8] == pytest.approx(2 / 16)
    assert tune_profile("X:1\nM:4/4\nL:1/8\nK:none\nA8|]\n") is None
    assert tune_profile("X:1\nM:4/4\nL:1/8\nK:D\nz8|]\n") is None


def test_a_rare_mode_borrows_the_pooled_profile_on_its_own_scale(profiles: dict) -> None:
    major = profile_for(profiles, "major")
    mix = profile_for({"major": profiles["major"]}, "mixolydian")
    assert mix[10] == pytest.approx(major[11] / sum(_laid(major)), rel=1e-6)  # the 7th step moves to b7
    assert mix[11] < mix[10]  # the major seventh is outside G mixolydian's scale
    own = {"profile": [1 / 12] * 12, "tunes": MIN_MODE_TUNES}
    assert profile_for({**profiles, "mixolydian": own}, "mixolydian") == own["profile"]
    few = profile_for({**profiles, "mixolydian": {**own, "tunes": MIN_MODE_TUNES - 1}}, "mixolydian")
    assert few != own["profile"] and few[11] < few[10]  # pooled with the major tunes, on its own scale
    assert profile_for(profiles, "aeolian") == profile_for(profiles, "minor")
    with pytest.raises(ConfigError, match="no minor-like tunes"):
        profile_for({"major": profiles["major"]}, "dorian")
    with pytest.raises(ConfigError, match="has no scale"):
        profile_for(profiles, "bogus")


def _laid(major: list[float]) -> list[float]:
    """The major profile laid on the mixolydian scale, before normalising (the test's own arithmetic)."""
    outside = [major[i] for i in range(12) if i not in MODE_SCALES["major"]]
    moved = [sum(outside) / 5] * 12
    for s, t in zip(MODE_SCALES["major"], MODE_SCALES["mixolydian"], strict=True):
        moved[t] = major[s]
    return moved


def test_the_bonus_is_centred_under_the_profile() -> None:
    profile = [0.3, 0, 0.1, 0, 0.2, 0.05, 0, 0.2, 0, 0.1, 0, 0.05]
    bonus = prior_bonus(profile, 1.0)
    floored = [max(p, 1e-3) for p in profile]
    p = [f / sum(floored) for f in floored]
    assert sum(q * b for q, b in zip(p, bonus, strict=True)) == pytest.approx(0, abs=1e-5)
    assert bonus[0] > bonus[7] > bonus[5] > bonus[1]
    assert bonus[1] - bonus[0] == pytest.approx(math.log(p[1] / p[0]), abs=1e-5)
    assert prior_bonus(profile, 2.0)[1] == pytest.approx(2 * bonus[1], abs=1e-5)
    assert set(prior_bonus(profile, 0)) == {0.0}
    for bad in (-1, float("nan"), True, "1"):
        with pytest.raises(ConfigError, match="theory_prior"):
            prior_bonus(profile, bad)
    with pytest.raises(ConfigError, match="12 non-negative"):
        prior_bonus([0.5, 0.5], 1.0)


def test_note_lengths_per_rhythm_are_written_lengths() -> None:
    lengths = tune_lengths("X:1\nM:4/4\nL:1/16\nK:D\nA3B (3ABc d>e {g}f2 z2 [ce]2|]\n")
    # A3 is 3/16, the tuplet and broken notes count as written (1/16), grace, rest and chord notes not at all
    assert lengths == {F(3, 16): 1, F(1, 16): 6, F(1, 8): 1}
    rows = [("X:1\nM:6/8\nL:1/8\nK:D\nABA B2A|]\n", "jig"), ("X:1\nM:6/8\nL:1/8\nK:D\nA3 B3|]\n", "jig"),
            ("X:1\nM:4/4\nL:1/8\nK:D\nABcd e4|]\n", "reel"), ("X:1\nM:4/4\nL:1/8\nK:D\nA8|]\n", "")]
    profiles = rhythm_profiles(rows)
    assert set(profiles) == {"jig", "reel"} and profiles["jig"]["tunes"] == 2
    assert profiles["jig"]["lengths"] == {"1/8": 0.4, "1/4": 0.1, "3/8": 0.5}  # each tune weighs the same: 4/5, 1/5; 1
    assert profile_for_rhythm(profiles, "jig") is None  # 2 tunes: too few for a profile
    many = {"jig": {**profiles["jig"], "tunes": MIN_RHYTHM_TUNES}}
    assert profile_for_rhythm(many, "jig") == profiles["jig"]["lengths"] and profile_for_rhythm(many, "reel") is None


def test_the_length_bonus_favours_what_the_rhythm_writes() -> None:
    table = length_bonus({"1/8": 0.85, "1/4": 0.1, "3/8": 0.05}, 1.0)
    assert table[-1][0] == 0  # the last entry: any other length
    assert bonus_for_length(table, F(1, 8)) > bonus_for_length(table, F(1, 4)) > bonus_for_length(table, F(3, 8))
    assert bonus_for_length(table, F(1, 16)) == table[-1][1] < bonus_for_length(table, F(3, 8))
    assert bonus_for_length(length_bonus({"1/8": 0.85, "1/4": 0.1, "3/8": 0.05}, 2.0), F(1, 4)) == pytest.approx(
        2 * bonus_for_length(table, F(1, 4)), abs=1e-5)
    with pytest.raises(ConfigError, match="note length"):
        length_bonus({}, 1.0)


def test_the_rule_weighs_notes_by_written_length() -> None:
    table = ((F(1, 8), 2.0), (F(1, 4), -1.0), (F(0), -5.0))
    c = constraint(key="D", meter="6/8", length_prior=table)
    assert _bonus_of(c, "A") == 2.0 and _bonus_of(c, "A2") == -1.0 and _bonus_of(c, "A3") == -5.0
    assert _bonus_of(c, "z") == 0.0  # rests are not weighed
    both = constraint(key="D", meter="6/8", length_prior=table, pitch_prior=[float(i) for i in range(12)])
    assert _bonus_of(both, "A2") == 7 - 1.0  # the fifth of D, a crotchet
    with pytest.raises(ConfigError, match="length_prior"):
        constraint(key="D", length_prior=((F(1, 8), 2.0),))


def test_the_processor_keeps_the_notes_share_and_reorders_within_it() -> None:
    """The prior decides which note, not whether a note: on random logits, the allowed notes' total probability
    is the same with and without the prior, and within the notes the tonic gains on the tritone."""
    import torch

    from abcgen.grammar import AbcLogitsProcessor

    prior = prior_bonus([0.3, 0, 0.1, 0, 0.2, 0.05, 0.001, 0.2, 0, 0.1, 0, 0.05], 1.0)
    c = constraint(key="D", meter="6/8", rules=DEFAULT_RULES, pitch_prior=prior, num_bars=4)
    c.feed(ids("A"))
    vocab = c.vocab
    torch.manual_seed(0)
    scores = torch.randn(1, vocab.size)
    plain = AbcLogitsProcessor([constraint(key="D", meter="6/8", rules=DEFAULT_RULES, num_bars=4)], 0)
    plain.constraints[0].feed(ids("A"))
    ids_in = torch.tensor([ids("A")])
    without = plain(ids_in, scores.clone()).softmax(-1)[0]
    with_prior = AbcLogitsProcessor([c], 0)(ids_in, scores.clone()).softmax(-1)[0]
    notes = vocab.notes
    assert float(with_prior[notes].sum()) == pytest.approx(float(without[notes].sum()), abs=1e-5)
    assert float(with_prior[~notes].sum()) == pytest.approx(float(without[~notes].sum()), abs=1e-5)
    d, g_sharp = ids("d")[0], ids("^G")[0]  # the tonic and the tritone of D
    assert with_prior[d] / with_prior[g_sharp] > 10 * without[d] / without[g_sharp]


def _bonus_of(c, text: str) -> float:  # noqa: ANN001
    bonus = c.bonus()
    return 0.0 if bonus is None else float(bonus[ids(text)[0]])


def test_the_rule_weighs_notes_by_degree_in_the_key() -> None:
    prior = [float(i) for i in range(12)]  # bonus = semitones above the tonic, easy to read
    c = constraint(key="D", pitch_prior=prior)
    assert _bonus_of(c, "D2") == 0 and _bonus_of(c, "A2") == 7 and _bonus_of(c, "F2") == 4  # F is F# in D
    assert _bonus_of(c, "=F2") == 3 and _bonus_of(c, "^c2") == 11 and _bonus_of(c, "z2") == 0
    c = constraint(key="Ador", pitch_prior=prior)
    assert _bonus_of(c, "A2") == 0 and _bonus_of(c, "F2") == 9 and _bonus_of(c, "=F2") == 8  # A dorian has F#
    c = constraint(key="Bb", pitch_prior=prior)
    assert _bonus_of(c, "B2") == 0 and _bonus_of(c, "E2") == 5  # E is Eb in Bb major
    # nothing is masked: the allowed set is the grammar's without the prior
    assert c.allowed_ids() == constraint(key="Bb").allowed_ids()
    with pytest.raises(ConfigError, match="pitch_prior"):
        constraint(key="D", pitch_prior=[1.0, 2.0])
    with pytest.raises(ConfigError, match="tonic"):
        constraint(key="none", pitch_prior=prior)


def test_the_rule_skips_grace_notes_and_sums_two_note_tokens() -> None:
    prior = [float(i) for i in range(12)]
    c = constraint(key="D", pitch_prior=prior, rules=DEFAULT_RULES, meter="6/8")
    c.feed(ids("{"))
    assert c.bonus() is None or float(c.bonus().abs().max()) == 0.0  # grace notes take no time


def test_random_walks_with_the_prior_stay_valid_and_follow_the_key(real_tunes: list[str]) -> None:
    """Sampling from the grammar's own allowed set with the bonus as the only logit: a strong prior keeps
    the notes in the key; every walk is still a complete tune the lexer reads."""
    prior = prior_bonus(profile_for(mode_profiles(real_tunes[:300]), "major"), 3.0)
    rng = random.Random(0)
    counts: Counter[int] = Counter()
    for _ in range(20):
        c = constraint(key="Eb", pitch_prior=prior, num_bars=4, max_new_tokens=120)
        walk = []
        while not c.finished:
            allowed = c.allowed_ids()
            bonus = c.bonus()
            weights = [math.exp(float(bonus[i])) if bonus is not None else 1.0 for i in allowed]
            token = rng.choices(allowed, weights)[0]
            walk.append(token)
            c.advance(token)
        body = "".join(c.vocab.texts[i] for i in walk[:-1])
        for event in lex_body(body, F(1, 8), F(1)):
            if event.kind == "note":
                counts[event.pitch.letter] += 1
    uniform = Counter()
    for _ in range(20):
        c = constraint(key="Eb", num_bars=4, max_new_tokens=120)
        body = "".join(c.vocab.texts[i] for i in random_walk(c, rng)[:-1])
        for event in lex_body(body, F(1, 8), F(1)):
            if event.kind == "note":
                uniform[event.pitch.letter] += 1
    share = counts["E"] / sum(counts.values())
    assert share > 1.5 * uniform["E"] / sum(uniform.values())  # the tonic letter gains


# --- the model folder and the pipeline -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, real_tunes: list[str]) -> Path:
    folder = tiny_music_model_folder(tmp_path_factory.mktemp("prior") / "model")
    jigs = [t for t in real_tunes if "M:6/8" in t][:60]  # real 6/8 tunes stand in for jigs, the rest for reels
    texts = jigs + [t for t in real_tunes if "M:6/8" not in t][:140]
    profiles = measure_profiles(texts, ["jig"] * len(jigs) + ["reel"] * (len(texts) - len(jigs)))
    assert profiles["rhythm_lengths"]["jig|6/8"]["tunes"] >= MIN_INTERVAL_TUNES  # per rhythm and meter
    write_model_profiles(folder, profiles["modes"], profiles["rhythms"], None, profiles["rhythm_lengths"],
                         corpus="test")
    return folder


@pytest.fixture(scope="module")
def pipe(model_dir: Path):  # noqa: ANN201
    from transformers import pipeline

    return pipeline("abc-generation", model=str(model_dir))


def test_the_file_round_trips_and_a_broken_one_is_one_line(tmp_path: Path, real_tunes: list[str]) -> None:
    modes = mode_profiles(real_tunes[:60])
    rhythms = {"jig": {"lengths": {"1/8": 0.9, "1/4": 0.1}, "tunes": 30}}
    path = write_model_profiles(tmp_path, modes, rhythms, corpus="c")
    assert path.name == PROFILES_FILE and read_model_profiles(path) == {"modes": modes, "rhythms": rhythms,
                                                                        "intervals": {}, "rhythm_lengths": {},
                                                                        "openings": {}}
    path.write_text('{"kind": "theory profiles", "schema_version": 1, "modes": {"major": {"profile": [1], "tunes": 3}}}')
    with pytest.raises(ConfigError, match="abcgen data profiles") as info:
        read_model_profiles(path)
    assert "\n" not in str(info.value)


def test_the_pipeline_prior_changes_the_tunes_and_keeps_them_valid(pipe) -> None:  # noqa: ANN001
    default = pipe(**REQUEST, num_return_sequences=4, seed=3)  # a model with theory profiles: strength 1
    assert pipe.default_theory_prior() == DEFAULT_THEORY_PRIOR > 0 and pipe.default_theory_prior(False) == 0.0
    assert [t["abc"] for t in default] == [t["abc"] for t in pipe(**REQUEST, num_return_sequences=4, seed=3,
                                                                  theory_prior=DEFAULT_THEORY_PRIOR)]
    assert pipe.default_rhythm_prior() == DEFAULT_RHYTHM_PRIOR > 0 and pipe.default_rhythm_prior(False) == 0.0
    plain = pipe(**REQUEST, num_return_sequences=4, seed=3, theory_prior=0.0, rhythm_prior=0.0)
    assert [t["abc"] for t in plain] != [t["abc"] for t in default]
    weighted = pipe(**REQUEST, num_return_sequences=4, seed=3, theory_prior=4.0)
    assert [t["abc"] for t in weighted] != [t["abc"] for t in plain]
    assert all(t["valid"] for t in weighted + plain)
    guided = pipe(**REQUEST, num_return_sequences=2, seed=3, theory_prior=1.0, guidance_scale=2.0)
    assert all(t["valid"] for t in guided)
    lengths = pipe(**REQUEST, num_return_sequences=4, seed=3, rhythm_prior=4.0, theory_prior=0.0)
    assert [t["abc"] for t in pipe(**REQUEST, num_return_sequences=4, seed=3, theory_prior=0.0)] == [
        t["abc"] for t in pipe(**REQUEST, num_return_sequences=4, seed=3, theory_prior=0.0,
                               rhythm_prior=DEFAULT_RHYTHM_PRIOR)]  # the default, where the folder has the profiles
    assert all(t["valid"] for t in lengths) and [t["abc"] for t in lengths] != [t["abc"] for t in plain]
    quavers = sum(tune_lengths(t["abc"])[F(1, 8)] / sum(tune_lengths(t["abc"]).values()) for t in lengths)
    plain_quavers = sum(tune_lengths(t["abc"])[F(1, 8)] / sum(tune_lengths(t["abc"]).values()) for t in plain)
    assert quavers > plain_quavers  # a jig writes more quavers than the reels do: they gain
    polka = {**REQUEST, "rhythm": "polka", "meter": "2/4"}
    assert pipe(**polka, seed=3, rhythm_prior=4.0)[0]["abc"] == pipe(**polka, seed=3)[0]["abc"]  # no profile
    free = pipe(**REQUEST, num_return_sequences=2, seed=3, constrained=False)  # the default: no prior unconstrained
    assert len(free) == 2
    two = pipe(**REQUEST, num_return_sequences=1, seed=3, theory_prior=1.0, voices=2)
    assert two[0]["valid"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"theory_prior": -1}, "theory_prior=-1: give a strength of 0 or more"),
    ({"theory_prior": "strong"}, "theory_prior='strong'"),
    ({"theory_prior": 1.0, "constrained": False}, "needs constrained=True"),
    ({"rhythm_prior": -0.5}, "rhythm_prior=-0.5: give a strength of 0 or more"),
])
def test_bad_prior_is_one_line_before_generating(pipe, kwargs: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as info:
        pipe(**REQUEST, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_default_prior_steps_aside_for_a_mode_the_corpus_lacks(tmp_path: Path, real_tunes: list[str]) -> None:
    from transformers import pipeline

    folder = tiny_music_model_folder(tmp_path / "major-only")
    write_model_profiles(folder, {"major": mode_profiles(real_tunes[:300])["major"]}, corpus="test")
    pipe = pipeline("abc-generation", model=str(folder))
    minor = {**REQUEST, "key": "Em"}
    assert pipe(**minor, seed=0)[0]["abc"] == pipe(**minor, seed=0, theory_prior=0.0)[0]["abc"]
    with pytest.raises(ConfigError, match="no minor-like tunes"):
        pipe(**minor, seed=0, theory_prior=1.0)  # asked for explicitly: refused, with the fix


def test_a_folder_without_profiles_names_the_command(tmp_path: Path) -> None:
    from transformers import pipeline

    folder = tiny_music_model_folder(tmp_path / "old")
    pipe = pipeline("abc-generation", model=str(folder))
    assert pipe.default_theory_prior() == 0.0  # an older folder: no prior by default, and no error
    assert pipe(**REQUEST, seed=0)[0]["abc"] == pipe(**REQUEST, seed=0, theory_prior=0.0)[0]["abc"]
    for name in ("theory_prior", "rhythm_prior"):
        with pytest.raises(ConfigError, match=f"{name}=1: .*abcgen data profiles --model FOLDER --data CORPUS"):
            pipe(**REQUEST, **{name: 1.0})


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from abcgen.corpus.build import BuildConfig, build_corpus

    out = tmp_path_factory.mktemp("prior-corpus") / "corpus"
    build_corpus(BuildConfig(sources=["music21:airdsAirs"], out=out, workers=1), progress=False)
    return out


def _abcgen(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "abcgen", *args], capture_output=True, text=True, timeout=300, env=env)


def test_cli_writes_profiles_and_generates_with_the_prior(tmp_path: Path, small_corpus: Path) -> None:
    folder = tiny_music_model_folder(tmp_path / "model")
    done = _abcgen("data", "profiles", "--data", str(small_corpus), "--model", str(folder))
    assert done.returncode == 0, done.stderr
    assert "theory profiles of" in done.stdout and (folder / PROFILES_FILE).is_file()
    written = read_model_profiles(folder / PROFILES_FILE)
    assert written["modes"]["major"]["tunes"] > 10 and written["intervals"]["all"]["tunes"] > 10
    again = _abcgen("data", "profiles", "--data", str(small_corpus), "--model", str(folder))
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    out = tmp_path / "tunes"
    done = _abcgen("generate", "--model", str(folder), "--key", "D", "--meter", "6/8", "--rhythm", "jig", "--bars",
                   "8", "--num", "2", "--theory-prior", "1.5", "--rhythm-prior", "1", "--interval-prior", "1",
                   "--title", "The Prior", "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = (out / "tune_00.abc").read_text()
    assert "T:The Prior" in text
    bad = _abcgen("generate", "--model", str(folder), "--key", "D", "--theory-prior", "-2", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "--theory-prior" in bad.stderr and "Traceback" not in bad.stderr
