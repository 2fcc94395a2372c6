"""The frame of one generation request, checked before any work: meter, unit length, key, pickup, bars and
form, and the body of a melody prompt to continue (``read_frame``; the ``abc-generation`` pipeline's
preprocessing)."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from abcgen.corpus.labels import normalise_meter
from abcgen.errors import AbcParseError, ConfigError
from abcgen.grammar.rules.forced import written_bars
from abcgen.notation.checks import check_tune
from abcgen.notation.keys import format_key, parse_key
from abcgen.notation.lexer import default_unit_length, parse_fraction
from abcgen.notation.tune import normalise_tune
from abcgen.tokenization.prompt import abc_header


def read_frame(prompt: str, conditions: dict[str, Any], pickup: str | None, endings: bool = False) -> dict[str, Any]:
    """Meter, unit length, key, bars and the melody prompt's body, all checked before generating; ``bars``
    (with a form: the written count of the played ``played_bars``; ``endings`` add a written bar to each
    repeated part)."""
    body = ""
    open_repeat = False
    check = None
    prompt = prompt.strip("\n")
    header_meter = header_key = header_unit = None
    if prompt:
        text = prompt if re.search(r"^K:", prompt, re.MULTILINE) else (
            abc_header(meter=conditions.get("meter", "4/4"), unit_length=conditions.get("unit_length", "1/8"),
                       key=conditions.get("key", "C")) + f"{prompt}\n")
        try:
            tune = normalise_tune(text)
        except AbcParseError as exc:
            raise AbcParseError(f"the melody prompt is not valid ABC: {exc.reason}", line=exc.line,
                                column=exc.column, bar=exc.bar) from exc
        header_meter, header_key, header_unit = tune.get("M"), tune.get("K"), tune.get("L")
        check = check_tune(tune)  # the corpus's checks; truncation is covered by the bar-line rule below
        # A prompt may stop inside a repeat ("|:dAF DFA|"): the constraint then has to close it.
        open_repeat = check.open_repeat
        problems = check.bar_problems + check.repeats_except_open
        if problems:
            raise AbcParseError(f"the melody prompt has problems: {problems[0]}")
        if not tune.body.rstrip().endswith(("|", "|]", ":|", "||")):
            raise AbcParseError("the melody prompt must end with a bar line: give whole bars to continue")
        body = tune.body.rstrip().removesuffix("|]").rstrip() + "\n"
        body = body if body.endswith(("|\n", ":\n")) else body.rstrip("\n") + "|\n"
    meter_text = str(conditions.get("meter") or header_meter or "4/4")
    # Compare as written (C = 4/4): 6/8 and 3/4 have the same length but are different meters.
    if header_meter and conditions.get("meter") and \
            normalise_meter(parse_fraction(header_meter), header_meter) != normalise_meter(parse_fraction(meter_text), meter_text):
        raise ConfigError(f"the melody prompt is in M:{header_meter} but meter={meter_text!r} was requested")
    meter = parse_fraction(meter_text)
    if meter is None:
        raise ConfigError(f"meter={meter_text!r} cannot be read (e.g. '6/8', '4/4', 'C'); free meter cannot be "
                          "generated bar by bar")
    unit_text = str(conditions.get("unit_length") or header_unit or _fraction_text(default_unit_length(meter)))
    unit = parse_fraction(unit_text)
    if unit is None:
        raise ConfigError(f"unit_length={unit_text!r} cannot be read (e.g. '1/8')")
    key = parse_key(str(conditions.get("key") or header_key or "C"))
    if header_key and conditions.get("key") and parse_key(header_key).label != key.label:
        raise ConfigError(f"the melody prompt is in K:{header_key} but key={conditions['key']!r} was requested")
    pickup_length = parse_fraction(pickup) if pickup else Fraction(0)
    if pickup and (pickup_length is None or not 0 < pickup_length < meter):
        raise ConfigError(f"pickup={pickup!r} must be a fraction of a whole note shorter than the bar ({meter})")
    bars = conditions.get("bars")
    form = conditions.get("form")
    if form is not None and not re.fullmatch(r"[A-Z]+", str(form)):
        raise ConfigError(f"form={form!r}: give section letters such as 'AABB' or 'ABAC'")
    if bars is not None and form and int(bars) % len(form):
        raise ConfigError(f"bars={bars} cannot be split into the {len(form)} sections of form {form!r}")
    # With a form, bars are *played* bars, as players count them (a 32-bar AABB reel is two 8-bar parts,
    # each played twice); everything downstream (the constraint, the bar check, the bars control token,
    # which the corpus counts as written) uses the written count.
    played = int(bars) if bars is not None else None
    written = written_bars(str(form), played, endings) if form and played is not None else played
    # Counted as every bar count is (BarReport.num_bars): bars with music, a leading pickup not counted.
    prompt_bars = check.report.num_bars if body else 0
    return {"meter": meter, "meter_text": meter_text, "unit": unit, "unit_text": unit_text,
            "key": key, "key_text": format_key(key), "bars": written, "played_bars": played,
            "form": form, "pickup": pickup_length or Fraction(0), "body": body, "prompt_bars": prompt_bars,
            "open_repeat": open_repeat}


# Q: of a generated tune by rhythm (the beat and beats a minute dance players take it at; session tempos,
# not competition ones), so that MIDI and audio sound like the dance. Rhythms not listed get no Q:.
TEMPO_BY_RHYTHM = {"jig": "3/8=116", "slip jig": "3/8=120", "slide": "3/8=130", "reel": "1/2=112",
                   "hornpipe": "1/2=84", "strathspey": "1/4=120", "fling": "1/4=120", "clog": "1/2=84",
                   "polka": "1/4=130", "waltz": "1/4=150", "march": "1/4=110", "air": "1/4=70"}


def page_header(header: str, conditions: dict[str, Any], title: str | None) -> str:
    """The header a generated tune is written with: the prompt's ``header`` plus ``T:`` (``title``, else
    made from the rhythm and key asked for: "Jig in D major") and ``Q:`` by rhythm (``TEMPO_BY_RHYTHM``).
    Only the output gets them: the model is prompted with the header it was trained on."""
    rhythm = str(conditions.get("rhythm") or "").strip().lower()
    if title is None:
        key = parse_key(str(conditions.get("key") or "C")).label
        title = f"{rhythm.capitalize() if rhythm else 'Tune'} in {key}"
    lines = header.split("\n")
    lines.insert(1, f"T:{title}")
    tempo = TEMPO_BY_RHYTHM.get(rhythm)
    if tempo:
        lines.insert(len(lines) - 2, f"Q:{tempo}")  # before K: (the last line; the text ends with a newline)
    return "\n".join(lines)


def check_title(title: Any) -> str | None:
    """``title`` checked: None or one line of text."""
    if title is None:
        return None
    if not isinstance(title, str) or not title.strip() or "\n" in title or "%" in title:
        raise ConfigError(f"title={title!r}: give one line of text without '%', e.g. title='The Butterfly'")
    return title.strip()


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


__all__ = ["TEMPO_BY_RHYTHM", "check_title", "page_header", "read_frame"]
