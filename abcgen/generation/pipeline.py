"""The ``abc-generation`` pipeline: conditions (and/or an opening melody) in, checked ABC tunes out.

    import abcgen
    from transformers import pipeline

    pipe = pipeline("abc-generation", model="runs/quickstart/lora/final")
    tunes = pipe(key="D", meter="6/8", rhythm="jig", bars=16, num_return_sequences=4, seed=0)
    tunes[0]["abc"], tunes[0]["valid"], tunes[0]["bars"]

How a call works:

1. **Conditions** are checked against ``control_vocabulary.json`` saved with the model (an unknown value
   is an ``UnknownConditionError`` listing the valid ones; a key/meter/rhythm combination never seen in
   training only warns) and become the control prefix the model was trained with.
2. **The header is written by the pipeline**, not sampled: ``X:1``, ``M:``, ``L:``, ``K:`` with the
   requested values (``K:`` last), so the requested key and meter are in every tune by construction.
   A melody ``prompt`` (whole bars of ABC) continues the body.
3. **Decoding** is constrained by default (``abcgen.grammar``): every complete bar has the
   meter's length, repeats are balanced, the tune ends with a final bar line within ``max_new_tokens``.
   ``grammar="idiom"`` adds the folk idiom, beams and a cadence (``abcgen.generation.arguments``; the
   ``"legacy"`` is plain notes and bar lines). ``constrained=False`` samples freely. Two controls make the
   model follow the request more closely: ``guidance_scale`` (classifier-free guidance on the control
   prefix, ``abcgen.generation.guidance``) and the theory prior (every note weighed by the training
   corpus's pitch profile of the requested mode, ``theory_prior``: ``abcgen.grammar.tonality``);
   ``unison_penalty`` takes logits off a note that repeats the melody note before it, and ``rhythm_prior``
   and ``interval_prior`` weigh each note's length and melodic step by how the requested rhythm takes them
   against the corpus's tunes at large (``abcgen.grammar.melody``; small models mark time, leap and write
   every dance alike).
4. **Each tune is checked** with the corpus's own checks and returned with its per-bar report;
   ``return_token_ids=True`` adds the prompt's and the generated token ids (one voice), which preference
   training (``train/align.py``) scores as sampled.

**Several voices** (``voices=2`` .. ``4``): the header gets ``V:1`` .. ``V:n`` definitions before ``K:`` and
the body is ``V:1`` + voice 1's bars, ``V:2`` + voice 2's bars, and so on. Voice 1 is generated as a
single voice is (bars, form, pickup); each later voice is generated after everything written so far
plus ``V:k``, constrained by the *bar template* of voice 1 (``grammar.bar_template``): the same
opening bar line, pickup, number of bars and the same bar-line text at the end of every bar. So every
voice has the same bar lengths and the same repeats and endings: the voices stay in step bar by bar.
"""

from __future__ import annotations

import importlib
import json
import logging
import numbers
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Pipeline

from abcgen.atomic import atomic_output_dir, check_output_dir
from abcgen.controls import CONDITIONS, condition_names
from abcgen.controls import conditions as registered_conditions
from abcgen.errors import AbcgenError, ConfigError
from abcgen.generation.arguments import (
    DEFAULT_GRAMMAR,
    DEFAULT_INTERVAL_PRIOR,
    DEFAULT_OPENING_PRIOR,
    DEFAULT_RHYTHM_PRIOR,
    DEFAULT_THEORY_PRIOR,
    GRAMMARS,
    MAX_SEED,
    check_grammar_options,
    check_int,
    check_real,
    check_theory_prior,
    check_unison_penalty,
    default_unison_penalty,
    read_prompt,
    short,
)
from abcgen.generation.frame import check_title, page_header, read_frame
from abcgen.generation.guidance import check_guidance, guided_generate
from abcgen.generation.model_files import (
    corpus_idioms,
    corpus_profiles,
    load_control_vocabulary,
    trained_conditions,
)
from abcgen.generation.sampling import check_model_path, check_sample, load_error, position_limit
from abcgen.grammar import AbcConstraint, AbcLogitsProcessor, BudgetTooSmallError, bar_template
from abcgen.grammar.idioms import MIN_ENDINGS_SHARE
from abcgen.grammar.melody import (
    MIN_INTERVAL_TUNES,
    POOLED,
    length_bonus_tables,
    length_profile_key,
    step_bonus,
)
from abcgen.grammar.melody import profile_for_rhythm as own_or_pooled
from abcgen.grammar.tonality import opening_bonus, prior_bonus, profile_for
from abcgen.model_folder import check_tokenizer_matches, model_representation
from abcgen.notation import events as ev
from abcgen.notation.bars import counted_bars, events_by_voice, split_bars
from abcgen.notation.tune import normalise_tune
from abcgen.render import check_render_request, render_abc
from abcgen.tokenization.prompt import prompt_format_for

log = logging.getLogger(__name__)

TASK = "abc-generation"


# Conditions the pipeline enforces itself (header, constraint): a model trained without their prefix token
# still honours them. Read from the registry (``Condition.structural``); this is the built-in set.
STRUCTURAL = tuple(c.name for c in registered_conditions() if c.structural)


def structural_conditions() -> tuple[str, ...]:
    """The registered conditions the pipeline writes or enforces itself (``Condition.structural``)."""
    return tuple(c.name for c in registered_conditions() if c.structural)


class UnknownConditionError(ConfigError):
    """A condition name or value the model was not trained with; the message lists the valid ones."""


class GenerationBudgetError(ConfigError):
    """``max_new_tokens`` cannot hold the requested tune; raised before generating."""


def _label(name: str, value: Any) -> str:
    """User spelling -> the corpus label (``Condition.label_of_request``): ``key="D"`` -> ``"D major"``,
    ``bars=16`` -> ``"16"``, ``rhythm="slipjig"`` -> ``"slip jig"`` (the corpus's own spelling)."""
    return CONDITIONS[name].label_of_request(value)


def condition_labels(conditions: dict[str, Any], vocabulary: Any, trained: Sequence[str]) -> dict[str, str]:
    """Conditions as corpus labels, each checked against a model's control vocabulary and the conditions it
    was trained with (``UnknownConditionError`` listing the valid ones); shared by both pipelines."""
    labels: dict[str, str] = {}
    for name, value in conditions.items():
        if name not in trained:
            if name in structural_conditions():
                continue  # written into the header / enforced by the constraint; no prefix token
            raise UnknownConditionError(f"the model was trained without {name!r} conditioning; it follows "
                                        f"{', '.join(trained)} (and writes key, meter, "
                                        "unit_length, bars and form into the tune itself)")
        if name not in vocabulary.values:
            raise UnknownConditionError(f"condition {name!r} is not one the model knows; it knows "
                                        f"{', '.join(vocabulary.values)}")
        label = _label(name, value)
        valid = [v for v in vocabulary.values[name] if v != "other"]
        if name == "bars" and label not in valid:
            # The number of bars is enforced by constrained decoding; its control token is only a hint.
            warnings.warn(f"bars={value} (bucket {label!r}) was not seen in training; generating without "
                          "the bars control token (the constraint still writes exactly that many bars)",
                          stacklevel=4)
            continue
        if label not in vocabulary.values[name] or label == "other":
            raise UnknownConditionError(f"{name}={value!r} (label {label!r}) was not seen in training; valid "
                                        f"values: {', '.join(valid[:40])}{' ...' if len(valid) > 40 else ''}")
        labels[name] = label
    combination = "|".join(labels.get(n, "") for n in ("key", "meter", "rhythm"))
    if all(labels.get(n) for n in ("key", "meter", "rhythm")) and combination not in vocabulary.combinations:
        warnings.warn(f"the combination key/meter/rhythm = {combination} never occurs in the training data; "
                      "the model may follow it loosely", stacklevel=4)
    return labels


def check_call_arguments(given: dict[str, Any], options: Sequence[str], *, num_return_sequences: Any,
                         temperature: Any, top_p: Any, max_new_tokens: Any, seed: Any, constrained: Any,
                         max_bars: int | None = None) -> None:
    """What both pipelines check the same way before generating (``ConfigError`` naming the value): no
    unknown argument (``given`` holds the keyword arguments left after the pipeline's own ``options``),
    each condition of its registered type (``bars`` at most ``max_bars`` when given), and the sampling
    settings."""
    unknown = [name for name in given if name not in CONDITIONS]
    if unknown:
        raise UnknownConditionError(f"unknown argument(s) {sorted(unknown)}; conditions are "
                                    f"{', '.join(condition_names())}, plus num_return_sequences, temperature, top_p, "
                                    f"max_new_tokens, seed, constrained, {', '.join(options)}")
    for condition in registered_conditions():
        value = given.get(condition.name)
        if value is None:
            continue
        if condition.arg_type is int:
            check_int(condition.name, value, 1, max_bars if condition.name == "bars" else None)
        elif not isinstance(value, str):
            raise ConfigError(f"{condition.name}={short(value)}: give it as text (a str), e.g. "
                              f"{condition.name}={condition.example!r}")
    check_int("num_return_sequences", num_return_sequences, 1)
    if max_new_tokens is not None:
        check_int("max_new_tokens", max_new_tokens, 1)
    if seed is not None:
        check_int("seed", seed, 0, MAX_SEED)
    check_real("temperature", temperature, "a number above 0 (1.0 samples the model as trained; lower is "
               "more conservative)", lambda v: v > 0)
    check_real("top_p", top_p, "a number above 0 and at most 1 (1.0 keeps every token)", lambda v: 0 < v <= 1)
    if not isinstance(constrained, bool):
        raise ConfigError(f"constrained={short(constrained)}: give True or False")


class MusicPipeline(Pipeline):
    """What both pipelines share: a causal LM of abcgen's with its own tokenizer, its control vocabulary and
    trained conditions, and the prompt format of the representation it was trained on."""

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    representation = ""  # "abc" or "remi": what the model must write (abcgen.model_folder.model_representation)
    other_task = ""  # the task for a model of the other representation (for the error message)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_tokenizer_matches(self.model, self.tokenizer)  # a foreign tokenizer: a clear error, not IndexError
        written = model_representation(self.model)
        if written != self.representation:
            raise ConfigError(f"model {self.model.name_or_path!r} was trained on {written.upper()}, not "
                              f"{self.representation.upper()}: use pipeline({self.other_task!r}), or train with "
                              f"data.representation: {self.representation}")
        self.vocabulary = load_control_vocabulary(self.model.name_or_path)
        self.trained_conditions = trained_conditions(self.model.name_or_path)
        # the prompt contract: [BOS] + control prefix, header, body, EOS (abcgen.tokenization.prompt)
        self.prompt_format = prompt_format_for(self.representation, self.tokenizer, self.vocabulary)


class AbcGenerationPipeline(MusicPipeline):
    """``pipeline("abc-generation", model=...)``; see the module docstring."""

    representation = "abc"
    other_task = "midi-generation"

    def __call__(self, prompt: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        """``prompt``: optional opening bars (ABC body, or a whole tune whose header must agree).

        Every argument is checked before anything is generated (``ConfigError`` naming the value and the
        valid range): ``bars``, ``voices``, ``num_return_sequences``, ``max_new_tokens`` whole numbers >= 1
        (``True`` is not a number here), ``seed`` a whole number from 0, ``temperature`` > 0, ``0 < top_p <=
        1``, ``constrained`` a bool, ``grammar``/``cadence``/``idioms``, conditions and ``pickup`` text; then the request against the model's
        positions (``GenerationBudgetError``)."""
        if prompt is not None and not isinstance(prompt, str):
            raise ConfigError(f"prompt={short(prompt)}: give the opening bars as ABC text (a str), or None")
        return super().__call__(prompt or "", **kwargs)

    def infill(self, abc: str, first_bar: int, last_bar: int, *, attempts: int = 8, seed: int = 0,
               **kwargs: Any) -> dict[str, Any]:
        """Rewrite bars ``first_bar..last_bar`` (1-based, inclusive) of a single-voice tune, keeping the bars
        around them. The new bars are generated after the bars before them (a causal model cannot read
        the bars after, so the splice is checked instead): each attempt is spliced in and checked with the
        corpus's checks, and the first valid result is returned (``attempts`` seeds from ``seed``)."""
        if not isinstance(abc, str):
            raise ConfigError(f"abc={short(abc)}: give the tune as ABC text (a str)")
        for name, value in (("first_bar", first_bar), ("last_bar", last_bar)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{name}={short(value)}: give a whole number, a bar of the tune counted from 1")
        check_int("attempts", attempts, 1)
        check_int("seed", seed, 0, MAX_SEED)
        tune = normalise_tune(abc)
        events = tune.events()
        if len(events_by_voice(events)) > 1:
            raise ConfigError("infilling supports single-voice tunes")
        # segments[i] is the text of bar i + 1 of split_bars (each bar line closes one), so the bars as the
        # bar count numbers them (with music, a leading pickup not counted) map to their text.
        segments, current = [], ""
        for event in events:
            current += event.text
            if event.kind == ev.BAR:
                segments.append(current)
                current = ""
        if current.strip():
            segments.append(current)
        music = [bar.index - 1 for bar in counted_bars(split_bars(events, tune.unit_length, tune.meter))]
        if not 1 <= first_bar <= last_bar <= len(music):
            raise ConfigError(f"bars {first_bar}..{last_bar} are not within the tune's {len(music)} bars (numbered "
                              "from 1, a pickup not counted): give 1 <= first_bar <= last_bar <= "
                              f"{len(music)}")
        before = "".join(segments[: music[first_bar - 1]])
        after = "".join(segments[music[last_bar - 1] + 1:])
        header = tune.to_abc()[: len(tune.to_abc()) - len(tune.body) - 1]
        prompt = header + before if before.strip() else None
        conditions = {"key": tune.get("K"), "meter": tune.get("M"), "unit_length": tune.get("L"), **kwargs}
        last: dict[str, Any] | None = None
        for attempt in range(attempts):
            result = self(prompt, **conditions, bars=(first_bar - 1) + (last_bar - first_bar + 1),
                          num_return_sequences=1, seed=seed + attempt)[0]
            # the generated bars end with the final bar line the constraint forces: make it a plain one
            middle = result["continuation"].rstrip().removesuffix("|]").rstrip() + "|"
            spliced = header + before + middle.strip() + (" " if after and not after.startswith("\n") else "") + after
            # the splice must keep the tune's number of bars (the generated bars are checked in place)
            check = check_sample(spliced, num_bars=len(music))
            last = {"abc": spliced.rstrip() + "\n", "valid": check.valid, "problems": check.problems,
                    "bars": check.bars, "infilled_bars": (first_bar, last_bar), "attempts": attempt + 1}
            if check.valid:
                return last
        return last  # type: ignore[return-value]

    # --- parameters ------------------------------------------------------------------------------------

    def _sanitize_parameters(
        self,
        pickup: str | None = None,
        num_return_sequences: int = 1,
        temperature: float = 1.0,
        top_p: float = 0.95,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        constrained: bool = True,
        voices: int = 1,
        grammar: str = DEFAULT_GRAMMAR,
        cadence: str | None = None,
        idioms: Any = None,
        guidance_scale: float = 1.0,
        title: str | None = None,
        endings: bool | None = None,
        theory_prior: float | None = None,
        rhythm_prior: float | None = None,
        unison_penalty: float | None = None,
        interval_prior: float | None = None,
        opening_prior: float | None = None,
        return_token_ids: bool = False,
        **given: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The conditions are the registry's (``abcgen.controls.conditions()``), each checked by its type."""
        check_call_arguments(given, ("pickup", "voices", "grammar", "cadence", "idioms", "guidance_scale", "title",
                                     "endings", "theory_prior", "rhythm_prior", "unison_penalty", "interval_prior",
                                     "opening_prior", "return_token_ids"),
                             num_return_sequences=num_return_sequences, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens, seed=seed, constrained=constrained)
        if pickup is not None and not isinstance(pickup, str):
            raise ConfigError(f"pickup={short(pickup)}: give it as text (a str), e.g. pickup='1/8'")
        requested = {c.name: given.get(c.name) for c in registered_conditions()}
        check_int("voices", voices, 1)
        if not isinstance(return_token_ids, bool):
            raise ConfigError(f"return_token_ids={short(return_token_ids)}: give True or False")
        if return_token_ids and voices > 1:
            raise ConfigError(f"return_token_ids=True with voices={voices}: token ids are returned for one voice "
                              "only (each later voice has a prompt of its own); leave it out or ask for one voice")
        options = check_grammar_options(grammar, cadence, idioms, endings)
        if options["endings"] is None:  # as often as the model's corpus writes them (idioms.json), per call
            share = (self._shares() or {}).get("endings", 0.0)
            options["endings"] = share >= MIN_ENDINGS_SHARE and random.Random(seed).random() < share
        options["guidance_scale"] = check_guidance(self.model, guidance_scale, voices)  # abcgen.generation.guidance
        options["theory_prior"] = self.default_theory_prior(constrained) if theory_prior is None \
            else check_theory_prior(theory_prior)
        options["theory_prior_given"] = theory_prior is not None
        options["opening_prior_given"] = opening_prior is not None
        options["rhythm_prior"] = self.default_rhythm_prior(constrained) if rhythm_prior is None \
            else check_theory_prior(rhythm_prior, "rhythm_prior")
        options["interval_prior"] = self.default_interval_prior(constrained) if interval_prior is None \
            else check_theory_prior(interval_prior, "interval_prior")
        options["opening_prior"] = self.default_opening_prior(constrained) if opening_prior is None \
            else check_theory_prior(opening_prior, "opening_prior")
        options["unison_penalty"] = default_unison_penalty(constrained) if unison_penalty is None \
            else check_unison_penalty(unison_penalty)
        if options["unison_penalty"] and not constrained:
            raise ConfigError(f"unison_penalty={options['unison_penalty']:g} is applied by the grammar: it needs "
                              "constrained=True (or leave unison_penalty at 0)")
        rhythm = requested.get("rhythm")
        options["rhythm"] = _label("rhythm", rhythm) if rhythm else None
        for name in ("theory_prior", "rhythm_prior", "interval_prior", "opening_prior"):
            if not options[name]:
                continue
            if not constrained:
                raise ConfigError(f"{name}={options[name]:g} is a rule of the grammar: it needs constrained=True "
                                  f"(or leave {name} at 0)")
            if self._profiles() is None:
                raise ConfigError(f"{name}={options[name]:g}: model {self.model.name_or_path!r} has no "
                                  "theory_profiles.json; write it with `abcgen data profiles --model FOLDER --data "
                                  f"CORPUS`, or leave {name} at 0")
        conditions = {name: value for name, value in requested.items() if value not in (None, "")}
        preprocess = {"conditions": conditions, "pickup": pickup, "max_new_tokens": max_new_tokens, "voices": voices,
                      "title": check_title(title), "endings": options["endings"]}
        forward = {"num_return_sequences": num_return_sequences, "temperature": temperature, "top_p": top_p,
                   "seed": seed, "constrained": constrained, "options": options}
        return preprocess, forward, {"return_token_ids": return_token_ids}

    def check_conditions(self, conditions: dict[str, Any]) -> dict[str, str]:
        """Conditions as corpus labels, each checked against the model's vocabulary (``condition_labels``)."""
        return condition_labels(conditions, self.vocabulary, self.trained_conditions)

    # --- preprocess: prompt ids and the tune's frame ------------------------------------------------------

    def preprocess(self, prompt: str, conditions: dict[str, Any], pickup: str | None,
                   max_new_tokens: int | None, voices: int = 1, title: str | None = None,
                   endings: bool = False) -> dict[str, Any]:
        if voices > 1 and prompt.strip():
            raise ConfigError(f"voices={voices} cannot be combined with a melody prompt: multi-voice generation "
                              "writes every voice from the first bar (give no prompt, or continue a single voice)")
        frame = read_frame(prompt, conditions, pickup, endings)
        labels = self.check_conditions({k: v for k, v in conditions.items() if k in self.vocabulary.values})
        fmt = self.prompt_format
        header = fmt.header(meter=frame["meter_text"], unit_length=frame["unit_text"], key=frame["key_text"],
                            voices=voices)
        prefix_ids = fmt.context_ids(labels)
        # several voices: the body of voice 1 follows its V: line
        ids = fmt.prompt_ids(labels, header + frame["body"] + fmt.body_start(1, voices))
        given = max_new_tokens is not None
        if max_new_tokens is None:
            # Room for the requested bars: ~12 tokens a bar is generous for folk tunes at L:1/8.
            max_new_tokens = max(64, TOKENS_PER_BAR * int(frame["bars"] or 32) + 16)
        self._check_positions(len(ids), max_new_tokens, voices, frame["bars"], given)
        return {"input_ids": torch.tensor([ids]), "frame": frame, "labels": labels, "header": header,
                "page_header": page_header(header, conditions, title),
                "max_new_tokens": max_new_tokens, "voices": voices, "prefix_ids": prefix_ids}

    def _check_positions(self, prompt_tokens: int, max_new_tokens: int, voices: int, bars: int | None,
                         given: bool) -> None:
        """Refuse a request the model cannot hold: the prompt plus every voice's new tokens (voice k reads
        the voices before it) beyond the model's positions -- checked before generating, since a transformer
        decodes past its positions slowly and into nonsense, and ``bars=100000`` would run for hours."""
        limit, source = position_limit(self.model)
        estimate = prompt_tokens + voices * max_new_tokens
        if estimate <= limit:
            return
        room = max(0, (limit - prompt_tokens) // voices)
        per_voice = f" x {voices} voices" if voices > 1 else ""
        if given:
            what, fix = f"max_new_tokens={max_new_tokens}", f"give max_new_tokens <= {room}"
        else:
            what = f"bars={bars}" if bars is not None else "the default length"
            fix = f"ask for at most {max(0, (room - 16) // TOKENS_PER_BAR)} bars"
        raise GenerationBudgetError(
            f"{what} needs about {estimate} tokens ({prompt_tokens} prompt + {max_new_tokens} new{per_voice}) but "
            f"the model reads at most {limit} ({source}): {fix}")

    # --- forward: batched, seeded generation ---------------------------------------------------------------

    def _grammar(self, options: dict[str, Any], frame: dict[str, Any], later_voice: bool = False) -> dict[str, Any]:
        """The ``AbcConstraint`` arguments of the call's grammar (``abcgen.generation.arguments``). The idiom
        grammar reads the *written* meter (6/8 and 3/4 beam differently) and the key (the cadence), and
        keeps the idioms of the model's corpus (every one the tokenizer has when the model has no
        ``idioms.json``). A later voice (``voices > 1``) follows voice 1's bar template without a cadence:
        it harmonises voice 1's ending rather than ending on the tonic itself."""
        endings = options["endings"] and not later_voice  # a later voice follows voice 1's template
        priors = self._priors(options, frame["key_text"], frame["meter_text"])
        if options["grammar"] == "legacy":
            return {"meter": frame["meter"], "rules": GRAMMARS["legacy"], "endings": endings, **priors}
        idioms = options["idioms"]
        if idioms is None:
            idioms = self._shares()
        rules = GRAMMARS["idiom"]
        if later_voice:
            rules = tuple(name for name in rules if name != "cadence")
        return {"meter": frame["meter_text"], "rules": rules, "idioms": idioms, "cadence": options["cadence"],
                "recurrence": not later_voice,  # phrases and returning sections replay earlier bars
                "cadence_sections": bool(frame["form"]) and not later_voice,  # each part ends on the tonic too
                "endings": endings, **priors}

    def _priors(self, options: dict[str, Any], key_text: str, meter_text: str | None = None) -> dict[str, Any]:
        """The decoding priors of the call, from the model's ``theory_profiles.json``: ``pitch_prior``, the bonus
        per semitone above the tonic of the call's key (``theory_prior``, ``abcgen.grammar.tonality``), and
        ``opening_prior``, the same for the pickup and first bar (``opening_bonus``); the ``unison_penalty``;
        ``rhythm_lengths`` (``rhythm_prior``: the requested rhythm's lengths in the call's meter against every
        tune of that meter) and ``interval_prior`` (its melodic steps against every
        tune's), both ``abcgen.grammar.melody`` and neither without a rhythm or for a rhythm with too few
        tunes, which is logged."""
        from abcgen.notation.keys import parse_key

        priors: dict[str, Any] = {}
        profiles = self._profiles() or {}
        mode = parse_key(key_text).mode if options["theory_prior"] or options["opening_prior"] else ""
        if options["theory_prior"]:
            try:
                profile = profile_for(profiles.get("modes", {}), mode)
            except ConfigError:
                if options["theory_prior_given"]:
                    raise
                profile = None  # the default prior steps aside where the corpus has no profile for the mode
                log.info("theory prior: the model's corpus has no profile for a %s request; not applied", mode)
            if profile is not None:
                priors["pitch_prior"] = prior_bonus(profile, options["theory_prior"])
        if options["opening_prior"]:
            openings = profiles.get("openings", {})
            if not openings:
                raise ConfigError(f"opening_prior={options['opening_prior']:g}: the model's theory_profiles.json has no "
                                  "opening profiles (written before they existed); rewrite it with `abcgen data "
                                  "profiles --model FOLDER --data CORPUS --overwrite`, or leave opening_prior at 0")
            try:
                priors["opening_prior"] = opening_bonus(openings, profiles.get("modes", {}), mode,
                                                        options["opening_prior"])
            except ConfigError:
                if options["opening_prior_given"]:
                    raise
                log.info("opening prior: the model's corpus has no profile for a %s request; not applied", mode)
        if options["rhythm_prior"] and options["rhythm"]:
            lengths = profiles.get("rhythm_lengths", {})
            if not lengths:
                raise ConfigError(f"rhythm_prior={options['rhythm_prior']:g}: the model's theory_profiles.json has no "
                                  "length profiles (written before they existed); rewrite it with `abcgen data "
                                  "profiles --model FOLDER --data CORPUS --overwrite`, or leave rhythm_prior at 0")
            own = lengths.get(length_profile_key(options["rhythm"], meter_text) or "")
            pooled = lengths.get(length_profile_key(POOLED, meter_text) or "")
            if own is None or pooled is None or int(own["tunes"]) < MIN_INTERVAL_TUNES:
                log.info("rhythm_prior: the model's corpus has too few %r tunes in %s for a length profile of "
                         "their own; not applied", options["rhythm"], meter_text)
            else:
                priors["rhythm_lengths"] = length_bonus_tables(own, pooled, options["rhythm_prior"])
        if options["unison_penalty"]:
            priors["unison_penalty"] = options["unison_penalty"]
        if options["interval_prior"]:
            intervals = profiles.get("intervals", {})
            pooled = intervals.get(POOLED)
            if pooled is None:
                raise ConfigError(f"interval_prior={options['interval_prior']:g}: the model's theory_profiles.json has "
                                  "no interval profile (written before it existed); rewrite it with `abcgen data "
                                  "profiles --model FOLDER --data CORPUS --overwrite`, or leave interval_prior at 0")
            profile = own_or_pooled(intervals, options["rhythm"])
            if profile is pooled:  # no rhythm asked, or too few of its tunes: nothing to tell it from the rest
                if options["rhythm"]:
                    log.info("interval_prior: the model's corpus has too few %r tunes for an interval profile of "
                             "their own; not applied", options["rhythm"])
            else:
                priors["interval_prior"] = step_bonus(profile, options["interval_prior"], reference=pooled)
        return priors

    def default_theory_prior(self, constrained: bool = True) -> float:
        """The theory prior a call gets without ``theory_prior``: ``DEFAULT_THEORY_PRIOR`` for constrained decoding
        of a model with ``theory_profiles.json``, else 0 (an older folder, a hub model published without it)."""
        if not constrained:
            return 0.0
        if self._profiles() is None:
            log.info("model %s has no theory_profiles.json: no theory prior (`abcgen data profiles` writes it)",
                     self.model.name_or_path)
            return 0.0
        return DEFAULT_THEORY_PRIOR

    def default_opening_prior(self, constrained: bool = True) -> float:
        """The opening prior a call gets without ``opening_prior``: ``DEFAULT_OPENING_PRIOR`` for constrained
        decoding of a model whose ``theory_profiles.json`` has opening profiles, else 0 (an older folder)."""
        return self._default_if_profiled(DEFAULT_OPENING_PRIOR, "openings", constrained)

    def default_interval_prior(self, constrained: bool = True) -> float:
        """The interval prior a call gets without ``interval_prior``: ``DEFAULT_INTERVAL_PRIOR`` for constrained
        decoding of a model whose ``theory_profiles.json`` has interval profiles, else 0 (an older folder)."""
        return self._default_if_profiled(DEFAULT_INTERVAL_PRIOR, "intervals", constrained, needs=POOLED)

    def default_rhythm_prior(self, constrained: bool = True) -> float:
        """The rhythm prior a call gets without ``rhythm_prior``: ``DEFAULT_RHYTHM_PRIOR`` for constrained
        decoding of a model whose ``theory_profiles.json`` has length profiles, else 0 (an older folder)."""
        return self._default_if_profiled(DEFAULT_RHYTHM_PRIOR, "rhythm_lengths", constrained)

    def _default_if_profiled(self, default: float, section: str, constrained: bool, needs: str | None = None) -> float:
        """``default`` for constrained decoding when the model's profiles have a non-empty ``section`` (with the
        entry ``needs`` where given), else 0: a prior the model folder cannot feed is off, not an error."""
        entries = (self._profiles() or {}).get(section) or {}
        if not constrained or not entries or (needs is not None and needs not in entries):
            return 0.0
        return default

    def _profiles(self) -> dict[str, Any] | None:
        """The theory profiles of the model's training corpus (``theory_profiles.json``: ``modes`` and
        ``rhythms``), read once."""
        if not hasattr(self, "_mode_profiles"):
            self._mode_profiles = corpus_profiles(self.model.name_or_path)
        return self._mode_profiles

    def _shares(self) -> dict[str, float] | None:
        """The idiom and structure shares of the model's training corpus (``idioms.json``), read once."""
        if not hasattr(self, "_corpus_shares"):
            self._corpus_shares = corpus_idioms(self.model.name_or_path)
        return self._corpus_shares

    def _forward(self, model_inputs: dict[str, Any], num_return_sequences: int, temperature: float, top_p: float,
                 seed: int | None, constrained: bool, options: dict[str, Any]) -> dict[str, Any]:
        from transformers import LogitsProcessorList

        input_ids = model_inputs["input_ids"].to(self.model.device).repeat(num_return_sequences, 1)
        frame, max_new_tokens = model_inputs["frame"], model_inputs["max_new_tokens"]
        processors = LogitsProcessorList()
        if constrained:
            try:
                constraints = [
                    AbcConstraint(self.tokenizer, unit_length=frame["unit"], key=frame["key_text"],
                                  num_bars=_remaining_bars(frame), max_new_tokens=max_new_tokens,
                                  pickup=frame["pickup"] if not frame["body"] else 0, form=frame["form"],
                                  open_repeat=frame["open_repeat"], **self._grammar(options, frame))
                    for _ in range(num_return_sequences)
                ]
            except BudgetTooSmallError as exc:
                raise GenerationBudgetError(str(exc)) from exc
            processors.append(AbcLogitsProcessor(constraints, [input_ids.shape[1]] * num_return_sequences))
        rng_state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(seed)
        try:
            output = guided_generate(self.model, self.prompt_format, model_inputs, options["guidance_scale"])(
                input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True, temperature=temperature,
                top_p=top_p, max_new_tokens=max_new_tokens, logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            )
            generated = output[:, input_ids.shape[1]:].cpu()
            voice_ids = [[row] for row in generated.tolist()]
            for voice in range(2, model_inputs["voices"] + 1):
                self._next_voice(model_inputs, voice, voice_ids, temperature, top_p, constrained, options)
        finally:
            if seed is not None:
                torch.random.set_rng_state(rng_state)
        out = {"generated": generated, **model_inputs, "constrained": constrained, "grammar": options["grammar"]}
        if model_inputs["voices"] > 1:
            out["voice_ids"] = voice_ids
        return out

    def _voice_body(self, voices: list[list[int]]) -> str:
        """The body of the voices written so far: ``V:1``, voice 1's bars, ``V:2``, ... (each voice's text
        up to its EOS, stripped, on lines of its own)."""
        fmt = self.prompt_format
        return fmt.join_voices([fmt.decode(_until_eos(ids, self.tokenizer)) for ids in voices])

    def _next_voice(self, model_inputs: dict[str, Any], voice: int, voice_ids: list[list[list[int]]],
                    temperature: float, top_p: float, constrained: bool, options: dict[str, Any]) -> None:
        """Generate voice ``voice`` (2, 3, ...) of every tune after the voices before it, in one left-padded
        batch; with constraints, each row follows the bar template of its own voice 1. Appends the new
        rows' ids to ``voice_ids``."""
        from transformers import LogitsProcessorList

        frame, max_new_tokens = model_inputs["frame"], model_inputs["max_new_tokens"]
        fmt = self.prompt_format
        prompts = [fmt.prompt_ids(model_inputs["labels"], model_inputs["header"] + self._voice_body(rows)
                                  + fmt.body_start(voice, model_inputs["voices"]))
                   for rows in voice_ids]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.model.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.model.device)
        processors = LogitsProcessorList()
        if constrained:
            # Voice 1 fitted in max_new_tokens, so its template (same bar lines, fewest notes) fits too.
            constraints = [
                AbcConstraint(self.tokenizer, unit_length=frame["unit"], key=frame["key_text"], num_bars=None,
                              max_new_tokens=max_new_tokens, pickup=frame["pickup"],
                              bar_lines=bar_template(self.tokenizer, rows[0]),
                              **self._grammar(options, frame, later_voice=True))
                for rows in voice_ids
            ]
            processors.append(AbcLogitsProcessor(constraints, width))
        output = self.model.generate(
            input_ids, attention_mask=attention, do_sample=True, temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, logits_processor=processors,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
        )
        for rows, new in zip(voice_ids, output[:, width:].cpu().tolist(), strict=True):
            rows.append(new)

    # --- postprocess: text, checks, report --------------------------------------------------------------

    def postprocess(self, model_outputs: dict[str, Any], return_token_ids: bool = False) -> list[dict[str, Any]]:
        """One result per tune. ``return_token_ids`` adds ``prompt_ids`` (the prompt the model read: BOS,
        control prefix, header) and ``token_ids`` (what it generated, up to and including EOS): the exact
        sequence preference training (``train/align.py``) scores, with no decode/encode round trip."""
        frame = model_outputs["frame"]
        results = []
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        if model_outputs["voices"] > 1:
            for voices in model_outputs["voice_ids"]:
                body = self._voice_body(voices)
                abc = model_outputs["page_header"] + body
                check = check_sample(abc, num_bars=frame["bars"])
                generated = sum(len(_until_eos(ids, self.tokenizer)) for ids in voices)
                results.append({"abc": abc, "valid": check.valid, "problems": check.problems,
                                "conditions": model_outputs["labels"], "bars": check.bars,
                                "constrained": model_outputs["constrained"], "generated_tokens": generated,
                                "continuation": body, "voices": len(voices)})
            return results
        for row in model_outputs["generated"]:
            ids = row.tolist()
            # tokens the model really generated: up to and including EOS (the rest is batch padding)
            generated = next((i + 1 for i, t in enumerate(ids) if t == eos), len(ids) - sum(t == pad for t in ids))
            continuation = self.prompt_format.decode(ids)
            abc = model_outputs["page_header"] + frame["body"] + continuation
            abc = abc.rstrip() + "\n"
            check = check_sample(abc, num_bars=frame["bars"])
            result = {"abc": abc, "valid": check.valid, "problems": check.problems,
                      "conditions": model_outputs["labels"], "bars": check.bars,
                      "constrained": model_outputs["constrained"], "generated_tokens": generated,
                      "continuation": continuation}
            if return_token_ids:
                result["prompt_ids"] = model_outputs["input_ids"][0].tolist()
                result["token_ids"] = ids[:generated]
            results.append(result)
        return results


def _until_eos(ids: list[int], tokenizer: Any) -> list[int]:
    """A generated row up to and including its EOS (the rest is batch padding); pad ids dropped when
    there is no EOS."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos in ids:
        return ids[: ids.index(eos) + 1]
    return [t for t in ids if t != pad]


def _remaining_bars(frame: dict[str, Any]) -> int | None:
    if frame["bars"] is None:
        return None
    remaining = frame["bars"] - frame["prompt_bars"]
    if remaining < 1:
        raise ConfigError(f"the melody prompt already has {frame['prompt_bars']} bars; bars={frame['bars']} leaves "
                          "nothing to generate")
    return remaining


# The default token budget per bar (generous for folk tunes at L:1/8).
TOKENS_PER_BAR = 12


def load_pipeline(model: str | Path) -> AbcGenerationPipeline:
    """``pipeline("abc-generation", model=model)`` with the model folder checked first (missing folder,
    tokenizer, vocabulary, truncated weights: one-line ``ConfigError``), and loader failures (a hub id
    that cannot be fetched, an unreadable config) turned into one-line ``ConfigError``s as well."""
    from transformers import pipeline


    check_model_path(model)
    try:
        return pipeline(TASK, model=str(model))
    except AbcgenError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise load_error(model, exc) from exc


def generate_to_folder(model: str | Path, out: str | Path, prompt_file: str | Path | None = None, *,
                       render: str | Sequence[str] = (), soundfont: str | Path | None = None, overwrite: bool = False,
                       **call: Any) -> dict[str, Any]:
    """``abcgen generate``: tunes from ``load_pipeline(model)(prompt, **call)`` written to ``out`` as
    ``tune_NN.abc`` (and each ``render`` format), with ``summary.json``; returns the summary.

    Checked before generating: the output folder (a used one only with ``overwrite``), the render formats
    and their tools, the prompt file, the model folder and every pipeline argument. The folder is written
    whole or not at all (``abcgen.atomic``): a failure leaves the previous output untouched."""
    out = Path(out)
    check_output_dir(out, overwrite=overwrite)
    formats: tuple[str, ...] = ()
    if render:
        formats = check_render_request(render, soundfont)
    prompt = read_prompt(prompt_file) if prompt_file is not None else None
    pipe = load_pipeline(model)
    tunes = pipe(prompt, **call)
    entries = []
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for index, tune in enumerate(tunes):
            name = f"tune_{index:02d}"
            (tmp / f"{name}.abc").write_text(tune["abc"], encoding="utf-8")
            entry = {"file": str(out / f"{name}.abc"),
                     **{k: tune[k] for k in ("valid", "problems", "conditions", "constrained")},
                     "num_bars": len(tune["bars"])}
            if formats:
                written = render_abc(tune["abc"], tmp / name, formats, soundfont=soundfont)
                entry["rendered"] = {fmt: str(out / path.name) for fmt, path in written.items()}
            entries.append(entry)
        summary = {"model": str(model), "valid": sum(t["valid"] for t in tunes), "num": len(tunes), "tunes": entries}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def register_task(task: str, pipeline_class: type, kind: str) -> None:
    """Register a pipeline class for ``task`` over causal LMs with transformers, once."""
    from transformers import AutoModelForCausalLM
    from transformers.pipelines import PIPELINE_REGISTRY

    if task not in PIPELINE_REGISTRY.supported_tasks:
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=AutoModelForCausalLM,
                                            type=kind)


def register_pipeline() -> None:
    """Register ``abc-generation`` with transformers (``import abcgen`` does it)."""
    register_task(TASK, AbcGenerationPipeline, "text")


__all__ = ["AbcGenerationPipeline", "AbcgenError", "GenerationBudgetError", "UnknownConditionError",
           "generate_to_folder", "load_control_vocabulary", "load_pipeline", "read_prompt", "register_pipeline"]

# Importing this module registers the task (abcgen/_lazy_registration.py imports it when transformers'
# pipelines are first imported).
register_pipeline()
# ... and midi-generation (REMI models), whose module imports this one: imported after everything here is
# defined (when that module is the one being imported, it is half-imported and registers itself at its end).
importlib.import_module("abcgen.generation.midi_pipeline")
