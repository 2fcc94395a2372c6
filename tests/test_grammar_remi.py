"""The REMI grammar (abcgen.grammar.remi): random walks through the constraint always decode to MIDI that
independent readers (mido, pretty_midi) open, with whole bars of the meter, only the requested programs,
pitches in range, and forced melody notes kept exactly."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import mido
import pretty_midi
import pytest

from abcgen.generation.midi_pipeline import forced_notes, remi_midi_bytes
from abcgen.grammar.errors import BudgetTooSmallError
from abcgen.grammar.remi import ForcedNote, RemiConstraint, bar_positions, program_range
from abcgen.notation.remi import POLYPHONIC_PROGRAMS
from abcgen.tokenization.remi import add_remi_tokens, remi_token_ids

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import tiny_base_tokenizer  # noqa: E402

METERS = ("4/4", "6/8", "3/4", "2/4", "9/8", "2/2", "3/2", "12/8", "C")
PROGRAM_SETS = ([40], [0, 32, 40], [40, 41, 42, 43], [73], [0])


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tok = tiny_base_tokenizer(tmp_path_factory.mktemp("base"))
    tok.add_special_tokens({"pad_token": "<pad>"})
    tok.eos_token = tok.eos_token or "<|endoftext|>"
    add_remi_tokens(tok)
    return tok


def _walk(constraint: RemiConstraint, rng: random.Random, ids: dict[str, int]) -> str:
    """Random allowed tokens until EOS; the REMI text."""
    inverse = {index: token for token, index in ids.items()}
    out = []
    while not constraint.done:
        allowed = constraint.allowed_tokens()
        assert allowed, f"dead end in phase {constraint.state.phase}"
        token = rng.choice(allowed)
        constraint.advance(token)
        out.append(token)
    assert constraint.state.generated <= constraint.max_new_tokens
    return " ".join(inverse[i] for i in out if i in inverse)


def _check_midi(midi: bytes, meter: str, bars: int, programs: list[int]) -> pretty_midi.PrettyMIDI:
    """What the issue asks of every piece, read back by libraries other than the one that wrote it."""
    mido.MidiFile(file=io.BytesIO(midi))  # opens
    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi))
    meter = {"C": "4/4", "C|": "2/2"}.get(meter, meter)
    numerator, denominator = (int(x) for x in meter.split("/"))
    assert [(ts.numerator, ts.denominator) for ts in pm.time_signature_changes] == [(numerator, denominator)]
    # every bar exactly the meter's length: bar lines every numerator * (4 / denominator) quarter notes, in
    # ticks (the tempo token sits at the first note, so seconds per bar change there)
    bar_ticks = pm.resolution * numerator * 4 // denominator
    notes = [(inst.program, note) for inst in pm.instruments for note in inst.notes]
    assert notes
    assert max(pm.time_to_tick(note.end) for _, note in notes) <= bars * bar_ticks
    assert {program for program, _ in notes} <= set(programs)
    for program, note in notes:
        low, high = program_range(program)
        assert low <= note.pitch <= high
    for inst in pm.instruments:  # a one-line instrument never plays two notes at once
        if inst.program not in POLYPHONIC_PROGRAMS:
            spans = sorted((pm.time_to_tick(n.start), pm.time_to_tick(n.end)) for n in inst.notes)
            assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False)), f"program {inst.program} overlaps"
    return pm


def test_random_walks_always_decode_to_whole_bars_of_requested_programs(tokenizer) -> None:  # noqa: ANN001
    ids = remi_token_ids(tokenizer)
    rng = random.Random(0)
    walks = 0
    for _ in range(320):
        meter, programs = rng.choice(METERS), rng.choice(PROGRAM_SETS)
        bars = rng.randint(1, 8)
        constraint = RemiConstraint(ids, tokenizer.eos_token_id, tokenizer.pad_token_id, meter, bars, programs,
                                    max_new_tokens=rng.randint(2 * bars + 8, 700),
                                    tempo=rng.choice([None, "122.99"]))
        text = _walk(constraint, rng, ids)
        assert text.count("Bar_None") == bars
        assert text.count("Tempo_") == 1
        if constraint.tempo:
            assert "Tempo_122.99" in text
        _check_midi(remi_midi_bytes(text), meter, bars, programs)
        walks += 1
    assert walks >= 300


def test_forced_melody_notes_are_kept_exactly(tokenizer) -> None:  # noqa: ANN001
    ids = remi_token_ids(tokenizer)
    rng = random.Random(1)
    for trial in range(40):
        meter, bars = rng.choice(("6/8", "4/4", "3/4")), rng.randint(2, 6)
        # a melody: a random walk of the violin alone
        melody = _walk(RemiConstraint(ids, tokenizer.eos_token_id, None, meter, bars, [40], 400), rng, ids)
        forced = forced_notes(melody, 40)
        assert forced
        constraint = RemiConstraint(ids, tokenizer.eos_token_id, None, meter, bars, [0, 32, 40],
                                    max_new_tokens=len(forced) * 5 + 2 * bars + 1 + rng.randint(0, 300),
                                    forced=forced)
        text = _walk(constraint, rng, ids)
        assert forced_notes(text, 40) == forced, f"trial {trial}"
        # the tightest budget the grammar accepts still ends the tune with every forced note in place
        tight = RemiConstraint(ids, tokenizer.eos_token_id, None, meter, bars, [0, 32, 40], 10_000,
                               forced=forced).finish_cost()
        squeezed = _walk(RemiConstraint(ids, tokenizer.eos_token_id, None, meter, bars, [0, 32, 40], tight,
                                        forced=forced), rng, ids)
        assert forced_notes(squeezed, 40) == forced
        pm = _check_midi(remi_midi_bytes(text), meter, bars, [0, 32, 40])
        violin = [n for inst in pm.instruments if inst.program == 40 for n in inst.notes]
        assert len(violin) == len(forced)


def test_bar_positions() -> None:
    with pytest.raises(ValueError, match="simple fraction"):
        bar_positions("free")
    assert bar_positions("6/8") == 144 and bar_positions("C") == 96


def test_budget_too_small_is_refused_before_generating(tokenizer) -> None:  # noqa: ANN001
    ids = remi_token_ids(tokenizer)
    with pytest.raises(BudgetTooSmallError, match="max_new_tokens=10 cannot hold 8 bars"):
        RemiConstraint(ids, tokenizer.eos_token_id, None, "4/4", 8, [40], 10)
    with pytest.raises(ValueError, match="no REMI time signature token"):
        RemiConstraint(ids, tokenizer.eos_token_id, None, "11/8", 4, [40], 100)
    with pytest.raises(ValueError, match="outside the tune"):
        RemiConstraint(ids, tokenizer.eos_token_id, None, "4/4", 2, [40], 100,
                       forced=[ForcedNote(3, 0, 40, 67, "103", "1.0.24")])
    # the tightest budget that holds the bars still ends with EOS, one note in all
    constraint = RemiConstraint(ids, tokenizer.eos_token_id, None, "4/4", 3, [40], 2 * 3 + 1 + 5 + 1)
    text = _walk(constraint, random.Random(3), ids)
    assert text.count("Bar_None") == 3 and text.count("Pitch_") == 1
    with pytest.raises(ValueError, match="not allowed"):
        RemiConstraint(ids, tokenizer.eos_token_id, None, "4/4", 3, [40], 100).advance(ids["Pitch_60"])
