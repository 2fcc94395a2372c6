"""The ABC layer: lexer, tunes and normalisation, keys, bars, structure, transposition, fingerprints."""

from __future__ import annotations

from fractions import Fraction

import pytest

from abcgen.errors import AbcParseError, BarDurationError
from abcgen.notation import events as ev
from abcgen.notation.bars import bar_durations, check_bars, validate_bars
from abcgen.notation.keys import format_key, parse_key
from abcgen.notation.lexer import lex_body, parse_duration, parse_fraction
from abcgen.notation.pitches import melody_fingerprint, sounding_pitches
from abcgen.notation.structure import derive_form, is_truncated, repeat_problems
from abcgen.notation.transpose import transpose_abc, transpose_to_key, transpose_tune
from abcgen.notation.tune import normalise_abc, normalise_tune, parse_tune, split_tunes


def _tune(body: str, meter: str = "4/4", length: str = "1/8", key: str = "D") -> str:
    return f"X:1\nT:Test\nM:{meter}\nL:{length}\nK:{key}\n{body}\n"


def _durations(body: str, **kw: object) -> list[Fraction]:
    return [e.duration for e in lex_body(body, **kw) if e.duration is not None]  # type: ignore[arg-type]


# --- lexer ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("", Fraction(1)), ("2", Fraction(2)), ("/", Fraction(1, 2)), ("//", Fraction(1, 4)), ("/4", Fraction(1, 4)),
    ("3/2", Fraction(3, 2)), ("3/", Fraction(3, 2)), ("12", Fraction(12)),
])
def test_parse_duration(text: str, value: Fraction) -> None:
    assert parse_duration(text) == value


def test_lexer_is_lossless_on_real_tunes(real_tunes: list[str]) -> None:
    checked = 0
    for raw in real_tunes:
        try:
            tune = normalise_tune(raw)
        except AbcParseError:
            continue
        assert "".join(e.text for e in tune.events()) == tune.body
        checked += 1
    assert checked > 450


def test_lexer_durations_of_each_construct() -> None:
    # broken rhythm: > gives 3/2 + 1/2, >> gives 7/4 + 1/4, < mirrors
    assert _durations("A>B C<D E>>F") == [Fraction(3, 2), Fraction(1, 2), Fraction(1, 2), Fraction(3, 2),
                                          Fraction(7, 4), Fraction(1, 4)]
    # tuplets: (3 = 3 in the time of 2; (3:2:4 applies to 4 notes; (2 = 2 in the time of 3
    assert _durations("(3abc d") == [Fraction(2, 3)] * 3 + [Fraction(1)]
    assert _durations("(3:2:4abcd") == [Fraction(2, 3)] * 4
    assert _durations("(2ab") == [Fraction(3, 2)] * 2
    # (9 is 9 in the time of 3 in compound meter (6/8, whose Fraction 3/4 looks simple), else of 2
    assert _durations("(9abcdefgab", compound=True) == [Fraction(1, 3)] * 9
    assert _durations("(9abcdefgab") == [Fraction(2, 9)] * 9
    assert normalise_tune(_tune("(9ABCDEFGAB c3|]", meter="6/8")).events()[1].duration == Fraction(1, 3)
    # chords take the first note's length times the outer multiplier; rests; grace notes take no time
    assert _durations("[CEG]2 [C2E2G2] [CE]/ z3 x/ {ag}a") == [2, 2, Fraction(1, 2), 3, Fraction(1, 2), 1]
    # multi-bar rest: 2 bars of 6/8 in L:1/8 units
    assert _durations("Z2", meter=Fraction(3, 4)) == [12]


def test_lexer_event_kinds_and_positions() -> None:
    body = '"Am"!trill!^c\'2 |: ~a-a [K:G] (3abc |1 d :|2 e |]\nV:2\nz8|'
    events = lex_body(body)
    kinds = [e.kind for e in events if e.kind not in (ev.SPACE,)]
    assert kinds[:5] == [ev.CHORD_SYMBOL, ev.DECORATION, ev.NOTE, ev.BAR, ev.DECORATION]
    note = next(e for e in events if e.kind == ev.NOTE)
    assert note.pitch and (note.pitch.letter, note.pitch.accidental, note.pitch.octave) == ("C", "^", 2)
    assert any(e.tied for e in events if e.kind == ev.NOTE)
    assert [e.text for e in events if e.kind == ev.BAR] == ["|:", "|1", ":|2", "|]", "|"]
    assert any(e.kind == ev.VOICE and e.field == ("V", "2") for e in events)
    assert [e for e in lex_body("a2-|a2") if e.kind == ev.NOTE][0].tied  # a tie may cross a bar line
    newline = next(e for e in events if e.kind == ev.NEWLINE)
    voice = next(e for e in events if e.kind == ev.VOICE)
    assert (voice.line, voice.column) == (2, 1) and newline.line == 1


@pytest.mark.parametrize(("body", "message", "column"), [
    ("abc # d", "unexpected character '#'", 5),
    ("ab [ceg", "unclosed chord", 4),
    ('ab "Am cd', "unterminated quoted", 4),
    ("ab !trill cd", "unterminated decoration", 4),
    ("ab>", "broken rhythm at the end", 4),
    ("ab>|c", "followed by a note in the same bar", 4),
    ("ab [M:C|L] cd", "cannot read meter", 4),
])
def test_lexer_errors_say_what_and_where(body: str, message: str, column: int) -> None:
    with pytest.raises(AbcParseError, match=message) as info:
        lex_body("abcd|\n" + body, tune="X:7 Test")
    assert info.value.line == 2 and info.value.column == column and info.value.tune == "X:7 Test"
    assert "line 2" in str(info.value) and "X:7 Test" in str(info.value)


def test_parse_fraction_meters() -> None:
    assert parse_fraction("C") == 1 and parse_fraction("C|") == 1
    assert parse_fraction("6/8") == Fraction(3, 4) and parse_fraction("(2+3)/8") == Fraction(5, 8)
    assert parse_fraction("none") is None


# --- tunes and normalisation ------------------------------------------------------------------------

def test_split_tunes_handles_blank_lines_bom_crlf_and_headerless_files() -> None:
    text = "\ufeff% collection\r\nX:1\r\nT:A\r\nK:D\r\nabc|\r\n\r\n\r\nX:2\nT:B\nK:G\ndef|\nX:3\nT:C\nK:A\nabc|\n"
    tunes = split_tunes(text)
    assert [t.x for t in tunes] == ["1", "2", "3"]
    assert tunes[1].line == 8 and tunes[0].text.endswith("abc|\n")
    assert len(split_tunes("T:No X\nK:D\nabc|\n")) == 1
    assert split_tunes("just some prose\n") == []


def test_an_unreadable_meter_is_an_error_not_free_meter() -> None:
    # a free meter switches the bar check off: "M:C|L" (seen in generated text) must not pass as one
    with pytest.raises(AbcParseError, match="cannot read meter M:C|L"):
        normalise_tune("X:1\nM:C|L\nL:1/8\nK:G\nabcd|\n")
    assert normalise_tune("X:1\nM:none\nL:1/8\nK:G\nabcdefg|\n").meter is None


def test_parse_tune_without_key_raises_with_the_tune_name() -> None:
    with pytest.raises(AbcParseError, match="no K: field") as info:
        parse_tune("X:3\nT:Keyless\nM:4/4\nabc|\n")
    assert info.value.tune == "X:3 Keyless"


def test_normalise_canonical_header_and_clean_body() -> None:
    raw = ("X:42\nT:The Tune\nZ:someone@example.org\nK:G Mixolydian\n")
    raw = "X:42\nM:6/8\nN:from a book\nR:Double Jig\nT:The Tune\nZ:transcriber\nK:G Mixolydian\n"
    raw += "% a comment\n|:GAB c2d | efg a3 \\\n| bag fed:|\nw: some lyrics here\nN:a note in the body\n"
    raw += "Play the second part twice\n|:d3 d3|d3 d3:|\n"
    tune = normalise_tune(raw)
    assert [k for k, _ in tune.fields] == ["X", "T", "R", "M", "L", "K"]
    assert tune.get("X") == "1" and tune.get("L") == "1/8" and tune.get("K") == "Gmix"
    assert tune.body == "|:GAB c2d | efg a3 | bag fed:|\n|:d3 d3|d3 d3:|"
    assert any("lyrics" in d for d in tune.dropped) and any("second part" in d for d in tune.dropped)
    assert normalise_abc(tune.to_abc()) == tune.to_abc()  # idempotent


def test_normalise_is_idempotent_on_real_tunes(real_tunes: list[str]) -> None:
    for raw in real_tunes[:200]:
        try:
            once = normalise_abc(raw)
        except AbcParseError:
            continue
        assert normalise_abc(once) == once


def test_default_unit_length_is_made_explicit() -> None:
    assert normalise_tune("X:1\nM:2/4\nK:D\nabcd|\n").get("L") == "1/16"
    assert normalise_tune("X:1\nM:6/8\nK:D\nabc abc|\n").get("L") == "1/8"


def test_line_end_closing_a_full_bar_gets_a_bar_line() -> None:
    # Essen writes phrases one per line and leaves out the bar line at the end of a line.
    tune = normalise_tune(_tune("d2c2 A4 | d4 d4\nA2c2 d4 |\nd8\nc8|]", meter="2/4", length="1/16"))
    assert tune.body == "d2c2 A4 | d4 d4|\nA2c2 d4 |\nd8|\nc8|]"
    # the events were patched, not re-lexed: they must equal a fresh lex of the new text
    assert tune.events() == lex_body(tune.body, tune.unit_length, tune.meter, tune=tune.name)


# --- keys ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "label", "sharps", "text"), [
    ("D", "D major", 2, "D"), ("Ador", "A dorian", 1, "Ador"), ("F#m", "F# minor", 3, "F#m"),
    ("Bb mix", "Bb mixolydian", -3, "Bbmix"), ("Em clef=bass", "E minor", 1, "Em"), ("none", "none", 0, "none"),
])
def test_parse_key(value: str, label: str, sharps: int, text: str) -> None:
    key = parse_key(value)
    assert (key.label, key.sharps, format_key(key)) == (label, sharps, text)


def test_parse_key_errors() -> None:
    with pytest.raises(AbcParseError, match="unknown mode"):
        parse_key("Dxyz")
    with pytest.raises(AbcParseError, match="cannot read key"):
        parse_key("H")


# --- bars ------------------------------------------------------------------------------------------------

def _report(abc: str):
    tune = normalise_tune(abc)
    return check_bars(tune.events(), tune.unit_length, tune.meter)


def test_bar_check_tolerates_pickups_split_repeats_and_endings() -> None:
    body = "A|:dAF DFA|d2f e2d|1 cBA GFE:|2 cBA d2|\n|:f|afd dfa|gec A2:|"
    report = _report(_tune(body, meter="6/8"))
    assert report.ok, report.problems
    assert report.num_bars == 7


def test_bar_check_flags_long_bars_and_short_bars_mid_section() -> None:
    report = _report(_tune("abcd efga|abc efga|abcd efga|abcd efga ab|abcd efga|]"))
    assert [p.bar for p in report.problems] == [2, 4]
    assert "shorter" in report.problems[0].reason and "longer" in report.problems[1].reason
    assert report.problems[0].line == 1 and report.problems[0].column == 11
    tune = normalise_tune(_tune("abcd efga|abc efga|abcd efga|abcd efga|]"))
    with pytest.raises(BarDurationError, match="bar 2"):
        validate_bars(tune.events(), tune.unit_length, tune.meter, tune="X:1")


def test_bar_split_in_two_at_a_fermata_is_one_bar() -> None:
    assert _report(_tune("A2 A2 F2 G2|F2 !fermata!A2|A2 B2|c2 d2 e2 f2|g8|]")).ok


def test_bar_durations_follow_inline_length_and_meter_changes() -> None:
    tune = normalise_tune(_tune("abcd efga|[L:1/16]abcdefgabcdefgab|[M:3/4][L:1/8]abc def|]"))
    assert bar_durations(tune.events(), tune.unit_length, tune.meter) == [1, 1, Fraction(3, 4)]
    assert _report(_tune("abcd efga|[L:1/16]abcdefgabcdefgab|[M:3/4][L:1/8]abc def|]")).ok


def test_multi_voice_bars_are_checked_per_voice_and_in_step() -> None:
    abc = "X:1\nM:4/4\nL:1/8\nV:1\nV:2\nK:C\nV:1\nc2|cdef gabc|c6|]\nV:2\nC2|C8|C6|]\n"
    assert _report(abc).ok
    bad = "X:1\nM:4/4\nL:1/8\nV:1\nV:2\nK:C\nV:1\nc2|cdef gabc|c6|]\nV:2\nC2|C6|C6|]\n"
    assert any("voice 2" in p.reason for p in _report(bad).problems)


def test_real_tunes_mostly_pass_the_bar_check(real_tunes: list[str]) -> None:
    bars = flagged = 0
    for raw in real_tunes:
        try:
            report = _report(raw)
        except AbcParseError:
            continue
        bars += len([b for b in report.bars if b.has_notes])
        flagged += len(report.problems)
    # Measured: about 2.5 % of the bars of the whole embedded corpus (Essen has many irregular bars);
    # the naive check (every bar == M:) flags about 6 %.
    assert bars > 8_000 and flagged / bars < 0.05


# --- structure ------------------------------------------------------------------------------------------

def test_form_repeats_and_truncation() -> None:
    tune = normalise_tune(_tune("|:ABcd efga|bagf edcB:|\n|:cdef gabc|1 abcd efga:|2 bagf edcB|]"))
    assert derive_form(tune.events()) == "AABB"
    assert derive_form(tune.events(), "ABAC") == "ABAC"
    assert repeat_problems(tune.events()) == []
    opened = normalise_tune(_tune("|:ABcd efga|bagf edcB|\n|:cdef gabc|bagf edcB:|"))
    assert any("still open" in p for p in repeat_problems(opened.events()))
    endings = normalise_tune(_tune("|:ABcd efga|2 bagf edcB:|1 cdef gabc|]"))
    assert any("ending 2 follows" in p for p in repeat_problems(endings.events()))
    cut = normalise_tune(_tune("ABcd efga|bagf edcB|cdef g"))
    assert is_truncated(cut.events(), check_bars(cut.events(), cut.unit_length, cut.meter).bars)
    whole = normalise_tune(_tune("ABcd efga|bagf edcB|cdef g4|]"))
    assert not is_truncated(whole.events(), check_bars(whole.events(), whole.unit_length, whole.meter).bars)


# --- pitches, transposition, fingerprints ----------------------------------------------------------------

def _midis(abc: str) -> list[int]:
    tune = normalise_tune(abc)
    return [m for _, ms in sounding_pitches(tune.events(), tune.key) for m in ms]


def test_sounding_pitches_apply_key_and_bar_accidentals() -> None:
    # D major: F and C are sharp; =c cancels for the rest of the bar only; octave marks.
    assert _midis(_tune("F c =c c | c C, c' [FA]")) == [66, 73, 72, 72, 73, 49, 85, 66, 69]


@pytest.mark.parametrize("shift", [-12, -7, -5, -2, -1, 1, 2, 3, 6, 7, 11])
def test_transposition_moves_every_pitch(shift: int) -> None:
    abc = _tune('"D"FAd f2e|^g=g f "A7"[Ace]2 _B|{ag}a2 (3bag f2 |]', meter="6/8")
    moved = transpose_abc(normalise_abc(abc), shift)
    assert _midis(moved) == [m + shift for m in _midis(abc)]


def test_transposition_spells_in_the_target_key() -> None:
    tune = normalise_tune(_tune('"D"FAd f2e|"A7/C#"[Ace]2 _B|]', meter="6/8"))
    up = transpose_tune(tune, 1)
    assert up.get("K") == "Eb" and up.body == '"Eb"GBe g2f|"Bb7/D"[Bdf]2 _c|]'
    assert transpose_to_key(tune, "G").get("K") == "G"


def test_transposition_round_trip_on_real_tunes(real_tunes: list[str]) -> None:
    done = 0
    for raw in real_tunes[::5]:
        try:
            tune = normalise_tune(raw)
            before = [m for _, ms in sounding_pitches(tune.events(), tune.key) for m in ms]
        except AbcParseError:
            continue
        for shift in (-3, 5):
            moved = normalise_tune(transpose_tune(tune, shift).to_abc())
            after = [m for _, ms in sounding_pitches(moved.events(), moved.key) for m in ms]
            assert after == [m + shift for m in before], (tune.name, shift)
        done += 1
    assert done > 80


def test_fingerprint_is_transposition_invariant_and_discriminates(real_tunes: list[str]) -> None:
    prints = set()
    tunes = []
    for raw in real_tunes[:100]:
        try:
            tunes.append(normalise_tune(raw))
        except AbcParseError:
            continue
    for tune in tunes:
        fp = melody_fingerprint(tune.events(), tune.key, tune.unit_length)
        moved = normalise_tune(transpose_tune(tune, 4).to_abc())
        assert melody_fingerprint(moved.events(), moved.key, moved.unit_length) == fp
        prints.add(fp)
    assert len(prints) >= len(tunes) - 2  # distinct tunes, distinct prints (the sample has no duplicates)


# --- legal ABC 2.1 the corpus builder used to reject (issue 11, item 12) -------------------------------------

def _music21_tune(relative: str, x: str) -> str:
    from abcgen.corpus.sources import music21_corpus_dir, read_text

    text, _ = read_text(music21_corpus_dir() / relative)
    return next(t.text for t in split_tunes(text or "") if t.x == x)


def test_continuation_before_a_field_line_keeps_the_field_in_place() -> None:
    """O'Neill's X:631 continues music lines with a backslash before L: lines; joining the field into the
    music as text made it 'stray ':''. ABC 2.1 allows field lines between continued lines."""
    raw = _music21_tune("oneills1850/0626-0635.abc", "631")
    assert "|\\\nL:1/16\n" in raw  # the real tune really has this layout
    tune = normalise_tune(raw)
    first_line = tune.body.split("\n")[0]
    assert first_line.startswith("(g>a)|[L:1/16]b4 (b/2a/2f3) (f/2g/2a3)|[L:1/8]{g}f2"), first_line
    assert check_bars(tune.events(), tune.unit_length, tune.meter).problems == []
    assert normalise_tune(tune.to_abc()).to_abc() == tune.to_abc()  # the inline fields are stable


def test_continuation_before_a_key_change_is_a_key_change() -> None:
    """A real tune with a mid-tune K: line (Ryan's 'Hippodrome'), rewritten with a backslash before it."""
    raw = _music21_tune("ryansMammoth/HippodromeReel.abc", "1")
    continued = raw.replace("d2:|\nK:Bb\n", "d2:|\\\nK:Bb\n")
    assert continued != raw
    plain, joined = normalise_tune(raw), normalise_tune(continued)
    assert "d2:|[K:Bb]|:vdc|" in joined.body
    assert [m for _, m in sounding_pitches(joined.events(), joined.key)] == \
        [m for _, m in sounding_pitches(plain.events(), plain.key)]


def test_mid_tune_key_change_changes_the_accidentals_from_there_on() -> None:
    tune = normalise_tune(_music21_tune("ryansMammoth/HippodromeReel.abc", "1"))  # K:D, then K:Bb
    assert "\nK:Bb\n" in tune.body
    assert check_bars(tune.events(), tune.unit_length, tune.meter).problems == []
    events = tune.events()
    change = events[next(i for i, e in enumerate(events) if e.field == ("K", "Bb"))].start
    pitches = [(e.text, m[0], e.start > change) for e, m in sounding_pitches(events, tune.key)]
    before = {(text, midi) for text, midi, later in pitches if not later}
    after = {(text, midi) for text, midi, later in pitches if later}
    assert ("F", 66) in before and ("F", 65) not in before  # F sharp in D major
    assert {("B", 70), ("F", 65), ("e", 75)} <= after  # B flat, F natural, E flat in B flat major
    assert ("B", 71) not in after and ("F", 66) not in after
    moved = transpose_tune(tune, 2)  # the body's K: moves with the notes
    assert "\nK:C\n" in moved.body and moved.get("K") == "E"


def test_header_directive_continued_onto_the_next_line_is_dropped_whole() -> None:
    """Aird's X:0020 'Jollity' continues a %%Bfly directive with a backslash; its second line is part of it."""
    raw = _music21_tune("airdsAirs/book1.abc", "0020")
    tune = normalise_tune(raw)
    assert tune.get("K") == "D" and tune.body.startswith("ded A2G|")
    assert any(d.startswith("0 0 3 2 1 4") for d in tune.dropped)
