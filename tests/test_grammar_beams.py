"""The beams rule: the constraint writes the spaces at the meter's beat groups (6/8: after each dotted
quarter; 4/4: each half bar; 2/4 and 3/4: each quarter) and a line break after every fourth bar; the
model chooses neither. The old layout still reproduces under ``LEGACY_RULES``."""

from __future__ import annotations

import random
import re

from grammar_helpers import F, allowed_texts, constraint, ids, random_walk

from abcgen.grammar.timing import beam_length, beat_length, meter_parts

RULES = ["repeats", "beams", "budget"]


def test_groups_of_the_written_meter() -> None:
    assert meter_parts(F(3, 4), "6/8") == (6, 8) and meter_parts(F(3, 4), None) == (3, 4)
    assert meter_parts(F(1), None) == (4, 4) and meter_parts(F(1), "C|") == (2, 2)
    assert meter_parts(F(3, 2), None) == (3, 2) and meter_parts(F(9, 8), None) == (9, 8)
    assert beam_length(6, 8) == F(3, 8) and beat_length(6, 8) == F(3, 8)
    assert beam_length(4, 4) == F(1, 2) and beat_length(4, 4) == F(1, 4)
    assert beam_length(3, 4) == F(1, 4) and beam_length(2, 2) == F(1, 2) and beam_length(12, 8) == F(3, 8)


def test_spaces_are_written_at_the_groups() -> None:
    c = constraint(rules=RULES, meter="6/8", unit_length=F(1, 8))
    assert " " not in allowed_texts(c)
    c.feed(ids("dA"))
    assert " " not in allowed_texts(c)
    c.feed(ids("F"))
    assert allowed_texts(c) & {" ", "D", "|"} == {" "}  # the first dotted quarter is full
    c.feed(ids(" DFA"))
    assert allowed_texts(c) >= {" ", "|"}  # the bar is full: a space may stand before its bar line
    c.feed(ids(" "))
    assert " " not in allowed_texts(c) and "|" in allowed_texts(c)  # one space, then the bar line
    c.feed(ids("|"))
    assert " " in allowed_texts(c) and "d" in allowed_texts(c)  # after a bar line, a space or not
    c.feed(ids(" "))
    assert " " not in allowed_texts(c)
    rng = random.Random(1)
    for meter, group in (("6/8", 3), ("9/8", 3), ("4/4", 4), ("2/4", 2)):
        c = constraint(rules=RULES, meter=meter, unit_length=F(1, 8), num_bars=4, max_new_tokens=200)
        body = "".join(c.vocab.texts[i] for i in random_walk(c, rng)[:-1])
        for bar in re.split(r"[|:\]\[\n]+", body):
            position = 0
            for piece in bar.split(" "):
                if piece:
                    assert position % group == 0 or position == 0, (meter, body)
                    position += sum(_units(note) for note in re.findall(r"[_^=]?[A-Ga-gz][,']*[0-9/]*", piece))


def _units(note: str) -> F:
    m = re.search(r"([0-9]*)(/*)([0-9]*)$", note)
    num = int(m.group(1)) if m.group(1) else 1
    den = int(m.group(3)) if m.group(3) else 2 ** len(m.group(2))
    return F(num, den)


def test_a_line_every_four_bars() -> None:
    c = constraint(rules=RULES, num_bars=9, max_new_tokens=200)
    assert c.min_tokens_to_finish() == 9 * 2 + 2 + 1  # 9 notes and bar lines, 2 line breaks, EOS
    c.feed(ids("A8|B8|c8|d8|"))
    assert allowed_texts(c) == {"\n"}
    c.feed(ids("\ne8"))
    assert "\n" not in allowed_texts(c)
    free = constraint(rules=RULES, num_bars=None)
    free.feed(ids("A8|B8|c8|d8|"))
    assert {"\n", "e8"} <= allowed_texts(free)  # without num_bars the model may break the line


def test_legacy_layout_is_unchanged() -> None:
    c = constraint()  # LEGACY_RULES
    c.feed(ids("A"))
    assert " " in allowed_texts(c)
