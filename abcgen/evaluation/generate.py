"""The generated side of an evaluation: conditions drawn from the real test split, tunes from the model.

Conditions are not invented: each generated tune copies the labels of one real test tune drawn at random
(its key, meter, unit length, bar count and -- where the model was trained with them -- rhythm, origin,
form ...), so the generated set asks for what the real set contains and the two can be compared
metric by metric. What was asked is kept with every tune: adherence is measured against it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from abcgen.controls import DRAW_CAPPED, DRAW_HEADER, DRAW_LABEL, OTHER, ControlVocabulary
from abcgen.controls import conditions as registered_conditions
from abcgen.errors import AbcgenError, ConfigError
from abcgen.evaluation.idiom import bars_without_pickups
from abcgen.generation.arguments import (
    DEFAULT_GRAMMAR,
    check_grammar_options,
    check_guidance_scale,
    check_theory_prior,
    check_unison_penalty,
)
from abcgen.grammar.rules.forced import played_bars
from abcgen.notation.checks import check_tune
from abcgen.notation.tune import parse_tune

log = logging.getLogger(__name__)


def header_conditions() -> tuple[str, ...]:
    """Conditions the pipeline writes into the header, whatever the model was trained on: always asked
    (``Condition.draw == DRAW_HEADER`` in the registry: key, meter, unit length)."""
    return tuple(c.name for c in registered_conditions() if c.draw == DRAW_HEADER)


HEADER_CONDITIONS = header_conditions()  # the built-in set


@dataclass
class GenerationSettings:
    """How the generated set is sampled; recorded in the report beside every number."""

    num_samples: int = 100  # tunes per seed
    seeds: tuple[int, ...] = (0, 1, 2)
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int | None = None  # None = the pipeline's budget for the requested bars
    constrained: bool = True
    max_bars: int = 32  # bar counts drawn from real tunes are capped here (long tunes cost generation time)
    voices_from_data: bool = True  # multi-voice rows ask for as many voices (up to 4; 1 under guidance)
    grammar: str | None = None  # "legacy" | "idiom" (abcgen.generation.arguments); None = the pipeline's default
    guidance_scale: float = 1.0  # classifier-free guidance (abcgen.generation.guidance); 1 = off
    theory_prior: float | None = None  # pitch prior of the requested mode (abcgen.grammar.tonality); 0 = off, None =
    # the pipeline's default (DEFAULT_THEORY_PRIOR for a model with theory_profiles.json; evaluate_model records it)
    rhythm_prior: float | None = None  # note-length prior of the requested rhythm (abcgen.grammar.melody); 0 = off,
    # None = the pipeline's default (2 for a model with length profiles; evaluate_model records the value used)
    unison_penalty: float | None = None  # logits off a repeated note (abcgen.grammar.melody); None = the pipeline's
    # default under constrained decoding (evaluate_model records the value used)
    interval_prior: float | None = None  # melodic-step prior of the requested rhythm (abcgen.grammar.melody); 0 =
    # off, None = the pipeline's default (2 for a model with interval profiles; evaluate_model records the value used)
    opening_prior: float | None = None  # the first bar's pitch prior (abcgen.grammar.tonality.opening_bonus); 0 = off,
    # None = the pipeline's default (1 for a model with opening profiles; evaluate_model records the value used)

    def check(self) -> None:
        """``grammar`` and ``guidance_scale`` by the pipeline's own checks (one ``ConfigError`` line), so a bad
        value stops an evaluation before anything is loaded or generated, not tune by tune inside it."""
        if self.grammar is not None:
            check_grammar_options(self.grammar, None, None)
        check_guidance_scale(self.guidance_scale)
        for name in ("theory_prior", "rhythm_prior", "interval_prior", "opening_prior"):
            if getattr(self, name) is None:
                continue
            value = check_theory_prior(getattr(self, name), name)
            if value and not self.constrained:
                raise ConfigError(f"{name}={value:g} is a rule of the grammar: it needs constrained decoding (leave "
                                  f"out --unconstrained, or --{name.replace('_', '-')})")
        if self.unison_penalty is not None and check_unison_penalty(self.unison_penalty) and not self.constrained:
            raise ConfigError(f"unison_penalty={self.unison_penalty:g} is applied by the grammar: it needs "
                              "constrained decoding (leave out --unconstrained, or --unison-penalty)")

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "seeds": list(self.seeds), "temperature": self.temperature,
                "top_p": self.top_p, "max_new_tokens": self.max_new_tokens, "constrained": self.constrained,
                "max_bars": self.max_bars, "voices_from_data": self.voices_from_data,
                "grammar": self.grammar or DEFAULT_GRAMMAR, "guidance_scale": float(self.guidance_scale),
                "theory_prior": None if self.theory_prior is None else float(self.theory_prior),
                "rhythm_prior": None if self.rhythm_prior is None else float(self.rhythm_prior),
                "unison_penalty": None if self.unison_penalty is None else float(self.unison_penalty),
                "interval_prior": None if self.interval_prior is None else float(self.interval_prior),
                "opening_prior": None if self.opening_prior is None else float(self.opening_prior)}

    def pipeline_options(self) -> dict[str, Any]:
        """The pipeline arguments these settings fix for every call (the conditions and seed vary)."""
        grammar = {"grammar": self.grammar} if self.grammar is not None else {}  # None: the pipeline decides
        return {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens,
                "constrained": self.constrained, "guidance_scale": self.guidance_scale,
                "theory_prior": self.theory_prior, "rhythm_prior": self.rhythm_prior,
                "unison_penalty": self.unison_penalty, "interval_prior": self.interval_prior,
                "opening_prior": self.opening_prior, **grammar}


@dataclass
class Request:
    """What one generated tune was asked for: pipeline arguments, and the real row they were copied from."""

    conditions: dict[str, Any]
    voices: int = 1
    source_row: int = -1
    skipped: dict[str, str] = field(default_factory=dict)  # condition -> why it was not requested


def eligible_rows(rows: Sequence[Mapping[str, Any]], vocabulary: ControlVocabulary, trained: Sequence[str]) -> list[int]:
    """Rows whose header conditions the model can be asked for: the pipeline refuses a key, meter or unit
    length the model was conditioned on but never saw (it writes them into the header, but its control
    token does not exist). The report states how many rows were eligible."""
    out = []
    for i, row in enumerate(rows):
        known = all(not row.get(name) or name not in trained or str(row[name]) in vocabulary.values.get(name, {})
                    for name in header_conditions())
        if known:
            out.append(i)
    return out


def draw_requests(rows: Sequence[Mapping[str, Any]], vocabulary: ControlVocabulary, trained: Sequence[str], n: int,
                  seed: int, *, max_bars: int = 32, voices_from_data: bool = True,
                  guided: bool = False) -> list[Request]:
    """``n`` requests, each copying the labels of a real row drawn with replacement (``random.Random(seed)``)
    among the ``eligible_rows``.

    How each condition is drawn is the registry's (``Condition.draw``): header conditions (key, meter, unit
    length) are always copied; the bar count (``DRAW_CAPPED``) is copied capped at ``max_bars``, recounted
    from the row's tune without its pickups (``_drawn_count``); any other
    label (``DRAW_LABEL``) becomes a condition when the model was trained with it (``trained``) and knows
    the value (it is in ``vocabulary``). Labels left out are recorded in ``Request.skipped`` with the
    reason, never silently. ``guided`` (classifier-free guidance, which works for one voice) asks a
    multi-voice row for its first voice only, recorded under ``skipped["voices"]``."""
    eligible = eligible_rows(rows, vocabulary, trained)
    if not eligible:
        raise ConfigError(f"none of the {len(rows)} real tunes has a key/meter/unit length the model was trained "
                          "with: evaluate on a corpus that matches the model's control vocabulary")
    rng = random.Random(seed)
    requests = []
    for _ in range(n):
        index = eligible[rng.randrange(len(eligible))]
        row = rows[index]
        wanted: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        registry = registered_conditions()
        for condition in registry:
            name = condition.name
            if condition.draw == DRAW_HEADER and row.get(condition.corpus_column):
                wanted[name] = str(row[condition.corpus_column])
        for condition in registry:
            count = _drawn_count(row, condition.corpus_column) if condition.draw == DRAW_CAPPED else 0
            if count:
                wanted[condition.name] = min(count, max_bars)
                if count > max_bars:
                    skipped[condition.name] = f"{count} bars capped at {max_bars}"
        for condition in registry:
            name = condition.name
            value = condition.label_of_row(row) if condition.draw == DRAW_LABEL else ""
            if not value:
                continue
            if name not in trained:
                skipped[name] = "the model was not trained with this condition"
            elif value == OTHER or value not in vocabulary.values.get(name, {}):
                skipped[name] = f"{value!r} is not in the model's vocabulary"
            else:
                wanted[name] = value
        voices = min(int(row.get("num_voices") or 1), 4) if voices_from_data else 1
        if voices > 1 and guided:
            skipped["voices"] = f"{voices} voices: classifier-free guidance works for one voice, so 1 was asked"
            voices = 1
        if voices > 1:
            wanted.pop("form", None)  # the pipeline's multi-voice mode follows voice 1's bars, not a form
        if wanted.get("form") and wanted.get("bars"):  # with a form the pipeline counts played bars
            played = played_bars(str(wanted["form"]), int(wanted["bars"]))
            if played is None:
                skipped["form"] = f"{wanted.pop('form')!r}: {wanted['bars']} written bars do not split into its sections"
            else:
                wanted["bars"] = played
        requests.append(Request(wanted, voices, index, skipped))
    return requests


def _drawn_count(row: Mapping[str, Any], column: str) -> int:
    """The integer a ``DRAW_CAPPED`` condition copies from a row. The bar count is recounted from the row's
    tune without any pickup (``bars_without_pickups``): the corpus's ``num_bars`` (``counted_bars``) leaves
    out only the tune's first pickup, so ``|:A|dfd ...|D3 D2:||:f|afa ...|d3 d2:|`` has 17 there, and asking
    a model for 17 bars asks for a tune no player would write (the grammar writes full bars only)."""
    if column == "num_bars" and row.get("abc"):
        try:
            return bars_without_pickups(check_tune(parse_tune(str(row["abc"]))).report.bars)
        except AbcgenError as exc:
            log.debug("bar count of a row from its num_bars column: %s", exc)
    return int(row.get(column) or 0)


def generate_for_requests(pipe: Any, requests: Sequence[Request], settings: GenerationSettings, seed: int,
                          *, progress: bool = True) -> list[dict[str, Any]]:
    """Run the ``abc-generation`` pipeline once per distinct request (``num_return_sequences`` = how many
    times it was drawn), seeded from ``seed``; returns one result per request, in request order, each with
    its ``request``. Never drops a tune: a failed call is kept as an invalid result with the error."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault((tuple(sorted(request.conditions.items())), request.voices), []).append(i)
    results: list[dict[str, Any] | None] = [None] * len(requests)
    bar = tqdm(total=len(requests), desc=f"generate (seed {seed})", disable=not progress)
    for group_index, ((conditions, voices), members) in enumerate(groups.items()):
        try:
            tunes = pipe(**dict(conditions), voices=voices, num_return_sequences=len(members),
                         **settings.pipeline_options(), seed=seed * 100_003 + group_index)
        except AbcgenError as exc:
            log.warning("generation failed for %s: %s", dict(conditions), exc)
            tunes = [{"abc": "", "valid": False, "problems": [f"generation failed: {exc}"]}] * len(members)
        for member, tune in zip(members, tunes, strict=True):
            results[member] = {"abc": tune["abc"], "valid": tune["valid"], "problems": tune.get("problems", []),
                               "request": requests[member]}
        bar.update(len(members))
    bar.close()
    return [r for r in results if r is not None]
