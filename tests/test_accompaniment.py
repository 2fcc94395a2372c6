"""Accompaniment fit measures (abcgen.evaluation.accompaniment) on a real Bach chorale and on broken copies of
its lower voices: Bach's own voices score as a harmony book expects, shifted or parallel voices do not."""

from __future__ import annotations

from pathlib import Path

import music21
import pytest

from abcgen.errors import ConversionError
from abcgen.evaluation.accompaniment import accompaniment_fit, mean_fit
from abcgen.generation.midi_pipeline import first_bars, only_programs, remi_bars, remi_midi_bytes
from abcgen.notation.musicxml import musicxml_to_abc
from abcgen.notation.remi import abc_to_remi
from abcgen.notation.tune import normalise_abc

CHORALE = Path(music21.__file__).parent / "corpus" / "bach" / "bwv276.mxl"


@pytest.fixture(scope="module")
def chorale() -> str:
    return first_bars(abc_to_remi(normalise_abc(musicxml_to_abc(CHORALE))), 8)


def _shift(remi: str, programs: set[int], semitones: int) -> str:
    """The same REMI with the pitches of ``programs`` moved by ``semitones``."""
    out, program = [], None
    for token in remi.split():
        if token.startswith("Program_"):
            program = int(token[8:])
        elif token.startswith("Pitch_") and program in programs:
            token = f"Pitch_{int(token[6:]) + semitones}"
        out.append(token)
    return " ".join(out)


def test_bach_fits_and_a_shifted_copy_does_not(chorale: str) -> None:
    assert remi_bars(chorale) == 8
    bach = accompaniment_fit(remi_midi_bytes(chorale), 40, 8)
    assert bach.bars_covered == 1.0 and bach.onsets_supported > 0.95
    assert bach.consonance > 0.85  # Bach's lowest voice under the soprano: thirds, fifths, sixths, octaves
    assert bach.parallels_per_bar < 0.2  # consecutive fifths/octaves between the outer voices: (almost) none
    off = accompaniment_fit(remi_midi_bytes(_shift(chorale, {41, 42, 43}, 1)), 40, 8)  # a semitone off
    assert off.consonance < bach.consonance - 0.3
    assert off.notes_per_bar == bach.notes_per_bar
    assert mean_fit([bach, off])["consonance"] == pytest.approx((bach.consonance + off.consonance) / 2, abs=1e-4)


def test_parallel_octaves_are_counted() -> None:
    notes = " ".join(f"Position_{24 * i} Program_40 Pitch_{72 + step} Velocity_79 Duration_1.0.24 "
                     f"Program_43 Pitch_{48 + step} Velocity_79 Duration_1.0.24"
                     for i, step in enumerate((0, 2, 4, 5)))
    remi = f"Bar_None TimeSig_4/4 {notes.replace('Position_0 ', 'Position_0 Tempo_122.99 ', 1)}"
    fit = accompaniment_fit(remi_midi_bytes(remi), 40, 1)
    assert fit.parallels_per_bar == 3  # C-D-E-F over C-D-E-F two octaves down: three consecutive octaves
    assert fit.consonance == 1.0 and fit.bars_covered == 1.0


def test_a_missing_melody_or_accompaniment_is_an_error(chorale: str) -> None:
    with pytest.raises(ConversionError, match="no track of program 73"):
        accompaniment_fit(remi_midi_bytes(chorale), 73)
    with pytest.raises(ConversionError, match="no accompanying track"):
        accompaniment_fit(remi_midi_bytes(only_programs(chorale, [40])), 40)
