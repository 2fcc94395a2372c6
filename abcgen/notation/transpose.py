"""Transpose ABC to any key, spelling notes the way the target key does.

The interval is diatonic: moving from D major to E♭ major shifts every letter by one step (D -> E)
and the pitch by one semitone, so ``F#`` in D becomes ``G`` in E♭, not ``F##``. Accidentals are written
only where the target key and the bar's earlier accidentals would not already give the right pitch,
plus wherever the source wrote one (courtesy accidentals stay courtesy accidentals).
"""

from __future__ import annotations

import re

from abcgen.errors import AbcParseError
from abcgen.notation import events as ev
from abcgen.notation.events import Pitch
from abcgen.notation.keys import LETTERS, NATURAL_SEMITONES, Key, format_key, key_for, parse_key
from abcgen.notation.pitches import AccidentalState, natural_midi
from abcgen.notation.tune import Tune, parse_tune

_ACC_TEXT = {2: "^^", 1: "^", 0: "=", -1: "_", -2: "__"}
_CHORD_SYMBOL_RE = re.compile(r'^"([A-G])([#b]?)([^/"]*)(?:/([A-G])([#b]?))?"$')
_SHARP_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
_FLAT_NAMES = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]


def format_pitch(letter: str, octave: int, accidental: str = "") -> str:
    """ABC text of a pitch: octave 0 = ``C``..``B``, 1 = ``c``..``b``, 2 = ``c'``, -1 = ``C,``."""
    if octave >= 1:
        return accidental + letter.lower() + "'" * (octave - 1)
    return accidental + letter.upper() + "," * (-octave)


class _Transposer:
    def __init__(self, source_key: Key, target_key: Key, semitones: int, steps: int) -> None:
        self.source = AccidentalState(source_key)
        self.target = AccidentalState(target_key)
        self.semitones = semitones
        self.steps = steps
        self.prefer_sharps = target_key.sharps >= 0

    def new_bar(self) -> None:
        self.source.new_bar()
        self.target.new_bar()

    def set_keys(self, source_key: Key, target_key: Key) -> None:
        self.source.set_key(source_key)
        self.target.set_key(target_key)

    def pitch(self, pitch: Pitch) -> str:
        midi = self.source.midi(pitch) + self.semitones
        index = LETTERS.index(pitch.letter) + pitch.octave * 7 + self.steps
        letter, octave = LETTERS[index % 7], index // 7
        alteration = midi - natural_midi(letter, octave)
        if abs(alteration) > 2:  # would need a triple accidental: respell enharmonically
            name = (_SHARP_NAMES if self.prefer_sharps else _FLAT_NAMES)[midi % 12]
            letter = name[0]
            octave = (midi - NATURAL_SEMITONES[letter] - 60) // 12
            alteration = midi - natural_midi(letter, octave)
        in_effect = self.target.bar.get((letter, octave), self.target.signature[letter])
        if alteration != in_effect or pitch.accidental:
            accidental = _ACC_TEXT[alteration]
            self.target.bar[(letter, octave)] = alteration
        else:
            accidental = ""
        return format_pitch(letter, octave, accidental)

    def chord_symbol(self, text: str) -> str:
        m = _CHORD_SYMBOL_RE.match(text)
        if not m:
            return text
        root, root_acc, quality, bass, bass_acc = m.groups()
        names = _SHARP_NAMES if self.prefer_sharps else _FLAT_NAMES

        def move(letter: str, acc: str) -> str:
            semis = NATURAL_SEMITONES[letter] + (1 if acc == "#" else -1 if acc == "b" else 0)
            return names[(semis + self.semitones) % 12]

        out = move(root, root_acc) + quality
        if bass:
            out += "/" + move(bass, bass_acc)
        return f'"{out}"'


def _target_key(key: Key, semitones: int) -> tuple[Key, int]:
    """The target key and the number of letter steps of the interval."""
    if not key.tonic:
        # No key signature: move letters by the nearest diatonic step count for the interval.
        target = Key(tonic="", mode="none", sharps=0)
        steps = round(semitones * 7 / 12)
        return target, steps
    target = key_for(key.tonic_semitone() + semitones, key.mode)
    # Letter steps within one octave for the pitch-class move, plus 7 per whole octave (floor division
    # makes a downward move land on the octave below: -2 semitones from D is C, 6 - 7 = -1 steps).
    steps = (LETTERS.index(target.tonic[0]) - LETTERS.index(key.tonic[0])) % 7
    if steps == 0 and semitones % 12 >= 6:
        steps = 7  # D up 11 semitones spelt D-flat: a diminished octave, 7 letter steps up
    steps += 7 * (semitones // 12)
    return target, steps


def transpose_tune(tune: Tune, semitones: int) -> Tune:
    """A copy of ``tune`` moved by ``semitones`` (positive = up), key signature and spelling included."""
    if semitones == 0:
        return Tune(fields=list(tune.fields), body=tune.body, name=tune.name)
    source_key = tune.key
    target_key, steps = _target_key(source_key, semitones)
    if source_key.extra:
        target_key = Key(target_key.tonic, target_key.mode, target_key.sharps)
    transposer = _Transposer(source_key, target_key, semitones, steps)
    pieces: list[str] = []
    for event in tune.events():
        if event.kind == ev.BAR:
            transposer.new_bar()
            pieces.append(event.text)
        elif event.kind == ev.NOTE and event.pitch:
            written = format_pitch(event.pitch.letter, event.pitch.octave, event.pitch.accidental)
            pieces.append(transposer.pitch(event.pitch) + event.text[len(written):])
        elif event.kind == ev.CHORD:
            pieces.append(_transpose_chord(event.text, transposer))
        elif event.kind == ev.GRACE:
            pieces.append(_transpose_grace(event.text, transposer))
        elif event.kind == ev.CHORD_SYMBOL:
            pieces.append(transposer.chord_symbol(event.text))
        elif event.kind in (ev.FIELD, ev.VOICE) and event.field and event.field[0] == "K":
            new_source = parse_key(event.field[1], tune=tune.name)
            new_target, _ = _target_key(new_source, semitones)
            transposer.set_keys(new_source, new_target)
            inline = event.text.startswith("[")
            text = f"K:{format_key(new_target)}"
            pieces.append(f"[{text}]" if inline else text)
        else:
            pieces.append(event.text)
    fields = [("K", format_key(target_key)) if k == "K" else (k, v) for k, v in tune.fields]
    return Tune(fields=fields, body="".join(pieces), name=tune.name)


_INNER_NOTE_RE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([',]*)")


def _transpose_inner(text: str, transposer: _Transposer) -> str:
    def repl(m: re.Match[str]) -> str:
        acc, letter, marks = m.groups()
        octave = (1 if letter.islower() else 0) + marks.count("'") - marks.count(",")
        return transposer.pitch(Pitch(letter.upper(), acc or "", octave))

    return _INNER_NOTE_RE.sub(repl, text)


def _transpose_chord(text: str, transposer: _Transposer) -> str:
    end = text.index("]")
    return "[" + _transpose_inner(text[1:end], transposer) + text[end:]


def _transpose_grace(text: str, transposer: _Transposer) -> str:
    # Grace notes do not change the bar's accidentals for the main notes in most engravers; abc2midi
    # applies them, so we follow ABC 2.1 and let them through the same state.
    return "{" + _transpose_inner(text[1:-1], transposer) + "}"


def transpose_abc(text: str, semitones: int) -> str:
    """Transpose a tune's ABC text by ``semitones``."""
    return transpose_tune(parse_tune(text), semitones).to_abc()


def semitones_to_key(tune: Tune, tonic: str) -> int:
    """The shift (-5..+6 semitones, the nearest direction) that moves the tune's tonic to ``tonic``."""
    key = tune.key
    if not key.tonic:
        raise AbcParseError("cannot transpose to a key: the tune has no key signature (K:none)", tune=tune.name)
    target = parse_key(tonic)
    shift = (target.tonic_semitone() - key.tonic_semitone()) % 12
    return shift - 12 if shift > 6 else shift


def transpose_to_key(tune: Tune, tonic: str) -> Tune:
    """Move a tune so its tonic is ``tonic`` (mode kept), by the smaller interval."""
    return transpose_tune(tune, semitones_to_key(tune, tonic))
