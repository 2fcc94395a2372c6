"""The sheet music draws the bars the ABC has (issue 13): verovio's engraved measures, repeat signs, endings,
key changes, title and lines, against our lexer, on form tunes as the pipeline writes them and on real
tunes of the embedded corpus.

How the two sides count. verovio engraves every bar with music as a measure of its own (``<g
class="measure">`` in the SVG): a pickup is one, and so is each bar of a first or second ending. Our lexer
(``split_bars``) gives the same bars; ``counted_bars`` -- the count users and the pipeline's ``num_bars``
see -- leaves a leading pickup out, so the engraved count is ``len(counted_bars(bars))`` plus one for a
tune with a pickup (``_abc_measures``). Bars without music (``:| |:`` written with a space between) are
counted by neither. Every tune is engraved by ``sheet.render_svg`` (verovio in a child process, about
0.15 s a tune), so the real-tune sample is small and marked slow.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from abcgen.errors import AbcParseError
from abcgen.notation import events as ev
from abcgen.notation.bars import counted_bars, events_by_voice, split_bars
from abcgen.notation.tune import Tune, normalise_tune
from abcgen.render import sheet
from abcgen.render._verovio_child import insert_at_measures, measure_spans
from abcgen.render.verovio_fixes import engraved_measures, engraving_input, verovio_bar

HEADER = "X:1\nT:{title}\nM:{meter}\nL:1/8\nK:{key}\n"
JIG = ["DFA dAF", "GBd gdB", "Ace gec", "dfa d3", "fed cBA", "Bcd efg", "fed cAF", "GEC D3"]  # 8 bars of 6/8
REEL = ["DFAF dFAF", "GBdB gBdB", "AcEc Acec", "dfaf d4", "fedc BAGF", "EFGA Bcde", "fdec dBAF", "GEFE D4"]


def _lines(bars: list[str], line_end: str) -> str:
    """Bars four to a line, as the pipeline writes them: ``|`` between bars, ``line_end`` ending each line."""
    return "\n".join("|".join(bars[i:i + 4]) + line_end for i in range(0, len(bars), 4))


def _section(bars: list[str], last: str) -> str:
    return _lines(bars[:4], "|") + "\n" + "|".join(bars[4:]) + last


# Form tunes as constrained decoding writes them (abcgen/grammar/rules/forced.py): (name, ABC, measures
# verovio must engrave, repeat signs it must draw). The numbers are written out, not derived: 16 or 32
# full bars, plus one for a pickup; 2 x (7 bars + two endings) for the free-mode tune with endings.
FORM_TUNES = [
    ("AABB ::", HEADER.format(title="Form AABB", meter="6/8", key="D") + "|:" + _section(JIG, "::\n")
     + _section(JIG[::-1], ":|\n"), 16, 4),
    ("AABB :| |:", HEADER.format(title="Form AABB split", meter="6/8", key="D") + "|:" + _section(JIG, ":|\n")
     + "|:" + _section(JIG[::-1], ":|\n"), 16, 4),
    ("AABB pickup ::", HEADER.format(title="Form AABB pickup", meter="C", key="D") + "FE|:" + _section(REEL, "::\n")
     + _section(REEL[::-1], ":|\n"), 17, 4),
    ("ABAC", HEADER.format(title="Form ABAC", meter="C", key="G") + "".join(
        _section(REEL if k % 2 == 0 else REEL[::-1], "||\n" if k < 3 else "|]\n") for k in range(4)), 32, 0),
    ("AAB", HEADER.format(title="Form AAB", meter="6/8", key="Ador") + "|:" + _section(JIG, ":|\n")
     + _section(JIG[::-1], "|]\n"), 16, 2),
    ("ABB", HEADER.format(title="Form ABB", meter="6/8", key="Em") + _section(JIG, "|:\n")
     + _section(JIG[::-1], ":|\n"), 16, 2),
    ("AABB :|:", HEADER.format(title="Form AABB colon", meter="6/8", key="D") + "|:" + _section(JIG, ":|:\n")
     + _section(JIG[::-1], ":|\n"), 16, 4),
    ("AABB endings ::", HEADER.format(title="Endings", meter="C", key="D") + "|:" + _lines(REEL[:4], "|") + "\n"
     + "|".join(REEL[4:7]) + "|1 GEFE D4:|\n[2 GEFE D2 z2::\n" + _lines(REEL[:4], "|") + "\n"
     + "|".join(REEL[4:7]) + "|1 GEFE D4:|2 GEFE D4|]\n", 18, 5),
]


def _abc_measures(tune: Tune) -> int:
    """The measures verovio must engrave: the bars our lexer counts (``counted_bars``), plus a pickup."""
    bars = split_bars(tune.events(), tune.unit_length, tune.meter)
    music = [b for b in bars if b.has_notes]
    pickup = len(music) - len(counted_bars(bars))  # 1 when the first bar is shorter than the meter
    return len(counted_bars(bars)) + pickup


def _repeat_signs(tune: Tune) -> int:
    """Repeat signs the ABC asks for around bars with music: a ``:`` before a bar's opening ``|``
    (a repeat start) and one after its closing ``|`` (a repeat end); ``::`` is both. A repeat start after
    the last bar (O'Neill's tunes that end ``|:|``) is drawn at the end of that bar."""
    def ends(text: str) -> bool:
        return verovio_bar(text).startswith(":")

    def starts(text: str) -> bool:
        return verovio_bar(text).rstrip("0123456789,-[").endswith(":")

    bars = [b for b in split_bars(tune.events(), tune.unit_length, tune.meter) if b.has_notes]
    return sum(starts(b.opening) + ends(b.closing) for b in bars) + (starts(bars[-1].closing) if bars else 0)


def _endings(tune: Tune) -> int:
    return sum(1 for i in engraving_input(tune).inserts if i[2].startswith("<ending"))


def _drawn(svg: str) -> dict[str, int]:
    """What verovio drew: measures, repeat signs (two repeat dots, SMuFL U+E044, each) and endings (one
    bracket each; a bracket carried on to the next system is drawn again as "spanning")."""
    return {"measures": engraved_measures(svg), "repeats": svg.count('xlink:href="#E044') // 2,
            "endings": len(re.findall(r'class="ending systemMilestone"', svg))}


# --- the respelling itself (no verovio) ------------------------------------------------------------------


@pytest.mark.parametrize(("written", "spelled"), [
    ("|", "|"), ("||", "||"), ("|]", "|]"), ("|:", "|:"), (":|", ":|"), (":||:", ":||:"),
    ("::", ":||:"), (":|:", ":||:"), ("||:", "|:"), ("[|", "||"), ("||]", "|]"), (":||", ":|"),
    ("|1", "|1"), (":|2", ":|2"), ("|[1", "|[1"), (":|[2", ":|[2"), ("::|", ":|"),
])
def test_bar_lines_are_respelled_as_verovio_reads_them(written, spelled):
    assert verovio_bar(written) == spelled


def test_engraving_input_keeps_the_music_and_the_users_abc():
    abc = ("X:1\nM:4/4\nL:1/8\nK:D\n|:DEFG ABcd::ABcd efga:|2 abc2 d4\nK:G\n[|GABc d4|[K:F]FGAc f4-|\n"
           "f4 (fedc)\n")
    tune = normalise_tune(abc)
    before = tune.to_abc()
    fix = engraving_input(tune, title="jig-d-01")
    body = fix.abc.split("K:D\n", 1)[1]
    assert fix.abc.startswith("X:1\nT:jig-d-01\nM:4/4")  # a tune without T: is titled by the caller
    assert body == ("|:DEFG ABcd:||:ABcd efga:|2 abc2 d4|\n%K:G\n||GABc d4|FGAc f4-|\nf4 (fedc)|\\\n")
    assert tune.to_abc() == before  # the tune itself is untouched
    assert fix.measures == 6 and _abc_measures(tune) == 6
    assert fix.inserts == [(2, "before", '<ending n="2" label="2">'), (2, "after", "</ending>"),
                           (3, "before", '<scoreDef keysig="1s" />'), (4, "before", '<scoreDef keysig="1f" />')]
    assert engraving_input(normalise_tune("X:1\nT:Kept\nK:D\nDEFG|\n"), title="stem").abc.count("T:") == 1


def test_mei_inserts_land_around_their_measures():
    mei = '<section><measure n="1"><staff/></measure><sb /><measure n="2"/>\n<measure n="3"></measure></section>'
    spans = measure_spans(mei)
    assert [mei[a:b][:16] for a, b in spans] == ['<measure n="1"><', '<measure n="2"/>', '<measure n="3"><']
    inserts = [[0, "after", "</ending>"], [1, "before", "<ending>"], [1, "before", "<scoreDef/>"], [2, "after", "!"]]
    assert insert_at_measures(mei, inserts, spans) == (  # an </ending> goes after the <sb> that follows it
        '<section><measure n="1"><staff/></measure><sb /></ending><ending><scoreDef/><measure n="2"/>\n'
        '<measure n="3"></measure>!</section>')


# --- engraved by verovio ---------------------------------------------------------------------------------


def test_verovio_misreads_the_repeat_bar_lines_our_respelling_fixes():
    """The misreading this module works around, measured: ``::`` and ``:|:`` straight to verovio."""
    name, abc, measures, repeats = FORM_TUNES[0]
    tune = normalise_tune(abc)
    raw = _drawn(sheet._stack_pages(sheet._run_verovio(tune.to_abc(), "abc", name)))
    assert (raw["measures"], raw["repeats"]) == (measures - 1, repeats - 2), (
        f"verovio now reads '::' ({raw}): the respelling in abcgen/render/verovio_fixes.py may be dropped")
    assert _drawn(sheet.render_svg(abc, name))["measures"] == measures


def test_form_tunes_engrave_every_bar_and_repeat():
    for name, abc, measures, repeats in FORM_TUNES:
        tune = normalise_tune(abc)
        assert (_abc_measures(tune), _repeat_signs(tune)) == (measures, repeats), name
        svg = sheet.render_svg(abc, name)
        expected = {"measures": measures, "repeats": repeats, "endings": _endings(tune)}
        assert _drawn(svg) == expected, name
        assert f">{tune.title}<" in svg, name  # the T: field is drawn as the title


def test_a_tune_without_title_gets_the_callers():
    """The renderer passes the output file's stem: a generated tune (no ``T:``) is titled "jig-d-01"; a
    tune's own ``T:`` wins. Both engraving routes: verovio's ABC importer and, for several voices, MusicXML."""
    abc = FORM_TUNES[4][1].replace("T:Form AAB\n", "")
    assert ">jig-d-01<" in sheet.render_svg(abc, "X:1", "jig-d-01")
    titled = sheet.render_svg(FORM_TUNES[4][1], "X:1", "jig-d-01")
    assert ">jig-d-01<" not in titled and ">Form AAB<" in titled
    duet = "X:1\nM:4/4\nL:1/8\nV:1\nV:2\nK:C\nV:1\nCDEF GABc|cBAG FEDC|]\nV:2\nC,D,E,F, G,A,B,C|CB,A,G, F,E,D,C,|]\n"
    svg = sheet.render_svg(duet, "X:1", "duet-c-01")
    assert ">duet-c-01<" in svg and engraved_measures(svg) == 2


def _per_system(svg: str) -> list[int]:
    return [engraved_measures(part) for part in svg.split('class="system"')[1:]]


def test_systems_follow_the_abc_lines(jig_lines):
    """A musician reads the lines as written (4 bars a line here; a pickup starts a line of 5), and a line
    too long for the page is broken rather than squeezed."""
    for abc, per_line in jig_lines:
        assert _per_system(sheet.render_svg(abc, "lines")) == per_line
    long_line = HEADER.format(title="Long", meter="C", key="D") + "|".join(REEL * 2) + "|]\n"
    systems = _per_system(sheet.render_svg(long_line, "long"))
    assert sum(systems) == 16 and len(systems) >= 3 and max(systems) <= 6, systems


@pytest.fixture(scope="module")
def jig_lines(real_tunes) -> list[tuple[str, list[int]]]:
    """The first O'Neill's tunes whose lines all end at a bar line, with their measures per line."""
    chosen = []
    for raw in real_tunes[:10]:
        try:
            tune = normalise_tune(raw)
        except AbcParseError:  # a corpus tune our reader refuses is not this test's subject
            continue
        if any(line.rstrip()[-1:] not in "|]:" for line in tune.body.split("\n")):
            continue
        bars = [b for b in split_bars(tune.events(), tune.unit_length, tune.meter) if b.has_notes]
        chosen.append((tune.to_abc(), list(Counter(b.line for b in bars).values())))
    assert len(chosen) >= 3
    return chosen[:3]


# --- real tunes ------------------------------------------------------------------------------------------

# What a real-tune sample must hold, and how many tunes of each (about 30 in all).
_FEATURES = {"::": 6, ":|:|:||:": 1, "|: and :|": 4, "endings": 6, "pickup": 4, "||": 3, "|]": 2,
             "line-spanning bar": 2, "key change": 2}


def _features(tune: Tune) -> set[str]:
    events = tune.events()
    bar_texts = {e.text for e in events if e.kind == ev.BAR}
    music = [b for b in split_bars(events, tune.unit_length, tune.meter) if b.has_notes]
    found = set()
    if "::" in bar_texts:
        found.add("::")
    if bar_texts & {":|:", ":||:", "||:"}:
        found.add(":|:|:||:")
    if "|:" in bar_texts and ":|" in bar_texts:
        found.add("|: and :|")
    if any(b.ending for b in music):
        found.add("endings")
    if len(counted_bars(music)) < len(music):
        found.add("pickup")
    found |= {t for t in ("||", "|]") if t in bar_texts}
    if _spans_a_line(events):
        found.add("line-spanning bar")
    if any(e.field and e.field[0] == "K" for e in events):
        found.add("key change")
    return found


def _spans_a_line(events: list[ev.Event]) -> bool:
    """A bar that goes on past the end of its line (no bar line at the line end)."""
    previous = None
    for event in events:
        if event.kind == ev.NEWLINE and previous is not None and previous.kind in ev.TIMED_KINDS:
            return True
        if event.kind not in (ev.SPACE,):
            previous = event
    return False


@pytest.fixture(scope="module")
def feature_tunes(real_tunes) -> list[tuple[str, set[str]]]:
    """About 30 one-voice tunes of O'Neill's, Ryan's and Aird's (the ``real_tunes`` sample) holding each
    feature of ``_FEATURES`` the number of times it asks for."""
    wanted = Counter(_FEATURES)
    chosen = []
    for raw in real_tunes:
        try:
            tune = normalise_tune(raw)
        except AbcParseError:  # a corpus tune our reader refuses is not this test's subject
            continue
        if len(events_by_voice(tune.events())) > 1:
            continue
        features = {f for f in _features(tune) if wanted[f] > 0}
        if features:
            wanted.subtract(features)
            chosen.append((tune.to_abc(), features))
    assert not +wanted, f"the sample lacks tunes with {dict(+wanted)}"
    return chosen


@pytest.mark.slow  # about 30 tunes, one verovio child process each
def test_real_tunes_engrave_every_bar_ending_and_repeat(feature_tunes):
    wrong = []
    for abc, features in feature_tunes:
        tune = normalise_tune(abc)
        expected = {"measures": _abc_measures(tune), "repeats": _repeat_signs(tune), "endings": _endings(tune)}
        drawn = _drawn(sheet.render_svg(abc, tune.title))
        if drawn != expected:
            wrong.append((tune.title, sorted(features), expected, drawn))
    assert not wrong, wrong
    assert len(feature_tunes) >= 25
