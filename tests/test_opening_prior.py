"""The opening prior (``abcgen.grammar.tonality.opening_bonus`` and the ``prior`` rule's opening bars): real tunes
state their key in the pickup and first bar; the profile of those bars per mode is learned from the corpus, its
log-ratio to the whole tune's is added to the theory prior there, and nowhere else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from grammar_helpers import F, constraint, ids
from tiny_models import tiny_music_model_folder

import abcgen  # noqa: F401  -- registers the task
from abcgen.errors import ConfigError
from abcgen.generation.arguments import DEFAULT_OPENING_PRIOR
from abcgen.grammar.melody import measure_profiles
from abcgen.grammar.tonality import (
    centred_log,
    mode_profiles,
    opening_bonus,
    opening_notes,
    prior_bonus,
    profile_for,
    tune_profile,
)
from abcgen.model_profiles import read_model_profiles, write_model_profiles
from abcgen.notation.piece import read_piece

REQUEST = {"key": "D", "meter": "6/8", "rhythm": "jig", "bars": 8}
PICKUP = "X:1\nM:6/8\nL:1/8\nK:G\nD|GAB dBG|A3 F3|GAB c2A|\n"
NO_PICKUP = "X:1\nM:6/8\nL:1/8\nK:G\nGAB dBG|A3 F3|GAB c2A|\n"


def test_the_opening_is_the_pickup_and_the_first_full_bar() -> None:
    assert [n.pitch for n in opening_notes(read_piece(PICKUP))] == [62, 67, 69, 71, 74, 71, 67]  # D|GAB dBG
    assert [n.pitch for n in opening_notes(read_piece(NO_PICKUP))] == [67, 69, 71, 74, 71, 67]  # GAB dBG
    mode, shares = tune_profile(PICKUP, opening=True)
    assert mode == "major" and shares[0] == pytest.approx(2 / 7) and shares[11] == 0  # no F# in the opening
    assert tune_profile(PICKUP)[1][11] > 0  # the whole tune has its F3


def test_real_openings_state_the_key_more_than_whole_tunes(real_tunes: list[str]) -> None:
    """O'Neill's and Ryan's: the tonic triad takes more of an opening's time than of the whole tune's."""
    sample = real_tunes[:300]
    whole, openings = mode_profiles(sample)["major"], mode_profiles(sample, opening=True)["major"]
    assert openings["tunes"] == whole["tunes"] > 100
    triad = (0, 4, 7)
    opening_triad = sum(openings["profile"][d] for d in triad)
    whole_triad = sum(whole["profile"][d] for d in triad)
    assert opening_triad > whole_triad + 0.05, (opening_triad, whole_triad)


def test_the_bonus_added_to_the_theory_prior_weighs_by_the_openings_profile(real_tunes: list[str]) -> None:
    """At equal strengths, theory prior + opening prior differ from the opening profile's own bonus by one
    constant per request (the processor keeps the notes' total: only differences between notes count)."""
    sample = real_tunes[:300]
    modes, openings = mode_profiles(sample), mode_profiles(sample, opening=True)
    for mode in ("major", "minor", "dorian"):
        summed = [a + b for a, b in zip(prior_bonus(profile_for(modes, mode), 1.5),
                                        opening_bonus(openings, modes, mode, 1.5), strict=True)]
        own = centred_log(profile_for(openings, mode), 1.5)
        shift = summed[0] - own[0]
        assert summed == pytest.approx([o + shift for o in own], abs=1e-4)
    assert opening_bonus(openings, modes, "major", 0.0) == (0.0,) * 12
    with pytest.raises(ConfigError, match="opening_prior=-1"):
        opening_bonus(openings, modes, "major", -1)


def _bonus(c, text: str) -> float:  # noqa: ANN001
    bonus = c.bonus()
    return 0.0 if bonus is None else float(bonus[ids(text)[0]])


def test_the_rule_adds_the_opening_bonus_in_the_first_bar_only() -> None:
    pitch = [0.0] * 12
    opening = [float(i) for i in range(12)]  # bonus = semitones above the tonic, easy to read
    c = constraint(key="D", pitch_prior=pitch, opening_prior=opening, num_bars=3, max_new_tokens=60)
    assert _bonus(c, "A2") == 7 and _bonus(c, "F2") == 4 and _bonus(c, "D2") == 0  # F is F# in D
    c.feed(ids("A6"))
    assert _bonus(c, "A2") == 7  # still the first bar
    c.feed(ids("A2"))
    c.feed(ids("|"))
    assert c.bars_done == 1 and _bonus(c, "A2") == 0 and _bonus(c, "F2") == 0
    with_pickup = constraint(key="D", opening_prior=opening, pickup=F(1, 8), num_bars=3, max_new_tokens=60)
    with_pickup.feed(ids("A"))  # the pickup
    with_pickup.feed(ids("|"))
    assert _bonus(with_pickup, "A2") == 7  # the first full bar after a pickup is still the opening
    plain = constraint(key="D", num_bars=3, max_new_tokens=60)
    assert plain.allowed_ids() == constraint(key="D", opening_prior=opening, num_bars=3,
                                             max_new_tokens=60).allowed_ids()  # nothing is masked
    with pytest.raises(ConfigError, match="opening_prior"):
        constraint(key="D", opening_prior=[1.0, 2.0])
    with pytest.raises(ConfigError, match="tonic"):
        constraint(key="none", opening_prior=opening)


# --- the model folder and the pipeline -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, real_tunes: list[str]) -> Path:
    folder = tiny_music_model_folder(tmp_path_factory.mktemp("opening") / "model")
    texts = real_tunes[:200]
    write_model_profiles(folder, **measure_profiles(texts, ["jig" if "M:6/8" in t else "reel" for t in texts]),
                         corpus="test")
    return folder


@pytest.fixture(scope="module")
def pipe(model_dir: Path):  # noqa: ANN201
    from transformers import pipeline

    return pipeline("abc-generation", model=str(model_dir))


def _opening_triad_share(tunes: list[dict]) -> float:
    """The share of the opening bars' time on D, F# and A (the requests are in D major)."""
    on, total = 0.0, 0.0
    for tune in tunes:
        for note in opening_notes(read_piece(tune["abc"])):
            total += float(note.duration)
            on += float(note.duration) * ((note.pitch - 62) % 12 in (0, 4, 7))
    return on / total


def test_the_pipeline_opening_prior_moves_the_first_bar_and_keeps_tunes_valid(pipe, model_dir: Path) -> None:  # noqa: ANN001
    assert read_model_profiles(model_dir / "theory_profiles.json")["openings"]["major"]["tunes"] > 50
    assert pipe.default_opening_prior() == DEFAULT_OPENING_PRIOR > 0 and pipe.default_opening_prior(False) == 0.0
    default = pipe(**REQUEST, num_return_sequences=4, seed=3)
    assert [t["abc"] for t in default] == [t["abc"] for t in pipe(**REQUEST, num_return_sequences=4, seed=3,
                                                                  opening_prior=DEFAULT_OPENING_PRIOR)]
    off = pipe(**REQUEST, num_return_sequences=8, seed=3, opening_prior=0.0)
    strong = pipe(**REQUEST, num_return_sequences=8, seed=3, opening_prior=4.0)
    assert all(t["valid"] for t in off + strong)
    assert _opening_triad_share(strong) > _opening_triad_share(off)
    # after the opening the prior is the theory prior alone: the tunes' bodies keep the model's choices there
    assert [t["abc"] for t in off] != [t["abc"] for t in strong]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"opening_prior": -1}, "opening_prior=-1: give a strength of 0 or more"),
    ({"opening_prior": 1.0, "constrained": False}, "needs constrained=True"),
])
def test_a_bad_opening_prior_is_one_line(pipe, kwargs: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as info:
        pipe(**REQUEST, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_older_folder_gets_no_opening_prior_and_names_the_command(tmp_path: Path, real_tunes: list[str]) -> None:
    from transformers import pipeline

    folder = tiny_music_model_folder(tmp_path / "old")
    profiles = measure_profiles(real_tunes[:100])
    write_model_profiles(folder, profiles["modes"], profiles["rhythms"], corpus="test")  # before openings
    old = pipeline("abc-generation", model=str(folder))
    assert old.default_opening_prior() == 0.0
    assert old(**REQUEST, seed=0)[0]["abc"] == old(**REQUEST, seed=0, opening_prior=0.0)[0]["abc"]
    with pytest.raises(ConfigError, match="abcgen data profiles") as info:
        old(**REQUEST, seed=0, opening_prior=1.0)
    assert "\n" not in str(info.value)


def test_a_broken_openings_entry_is_one_line(tmp_path: Path, real_tunes: list[str]) -> None:
    path = write_model_profiles(tmp_path, mode_profiles(real_tunes[:40]), openings={"major": {"profile": [1.0],
                                                                                             "tunes": 3}})
    with pytest.raises(ConfigError, match="'openings'") as info:
        read_model_profiles(path)
    assert "\n" not in str(info.value)


def test_cli_refuses_the_opening_prior_where_nothing_is_generated(tmp_path: Path) -> None:
    abc = tmp_path / "t.abc"
    abc.write_text(NO_PICKUP)
    done = subprocess.run([sys.executable, "-m", "abcgen", "evaluate", "--abc", str(abc), "--out", str(tmp_path / "o"),
                           "--opening-prior", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--opening-prior" in done.stderr and "Traceback" not in done.stderr
