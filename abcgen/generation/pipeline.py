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
3. **Decoding** is constrained by default (``abcgen.generation.constraints``): every complete bar has the
   meter's length, repeats are balanced, the tune ends with a final bar line within ``max_new_tokens``.
   ``constrained=False`` samples freely (for comparison).
4. **Each tune is checked** with the corpus's own checks and returned with its per-bar report.

**Several voices** (``voices=2`` .. ``4``): the header gets ``V:1`` .. ``V:n`` definitions before ``K:`` and
the body is ``V:1`` + voice 1's bars, ``V:2`` + voice 2's bars, and so on. Voice 1 is generated as a
single voice is (bars, form, pickup); each later voice is generated after everything written so far
plus ``V:k``, constrained by the *bar template* of voice 1 (``constraints.bar_template``): the same
opening bar line, pickup, number of bars and the same bar-line text at the end of every bar. So every
voice has the same bar lengths and the same repeats and endings: the voices stay in step bar by bar.
"""

from __future__ import annotations

import logging
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from transformers import Pipeline

from abcgen.controls import CONTROL_NAMES, ControlVocabulary, bars_bucket
from abcgen.controls import FILENAME as CONTROL_VOCABULARY_FILE
from abcgen.corpus.labels import normalise_meter
from abcgen.errors import AbcgenError, AbcParseError, ConfigError
from abcgen.notation.keys import format_key, parse_key
from abcgen.notation.lexer import default_unit_length, parse_fraction

log = logging.getLogger(__name__)

TASK = "abc-generation"


# Conditions the pipeline enforces itself (header, constraint): a model trained without their prefix token
# still honours them.
STRUCTURAL = ("key", "meter", "unit_length", "bars", "form")


def _model_file(name_or_path: str | Path, filename: str) -> Path | None:
    """``filename`` of a model: from a local folder, or from a hub repository through ``hf_hub_download``
    (the HF cache, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the login token all apply). ``None`` when the
    model has no such file -- a missing file, not an unreachable hub, which is a ``ConfigError``."""
    path = Path(name_or_path)
    if path.is_dir():
        return path / filename if (path / filename).is_file() else None
    from huggingface_hub import _CACHED_NO_EXIST, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        return Path(hf_hub_download(str(name_or_path), filename))
    except RemoteEntryNotFoundError:
        return None  # the repository answered: it has no such file
    except Exception as exc:  # offline and not cached, unreachable, private repo: one clear message
        if try_to_load_from_cache(str(name_or_path), filename) is _CACHED_NO_EXIST:
            return None  # an earlier online look-up found the file missing, and the cache remembers it
        raise ConfigError(f"cannot read {filename} of model {str(name_or_path)!r}: {exc}") from exc


def trained_conditions(name_or_path: str | Path) -> tuple[str, ...]:
    """The condition names the model saw as prefix tokens (``data.conditions`` of the saved training
    config, in a local folder or a hub repository); every name when the model has no training config."""
    config = _model_file(name_or_path, "abcgen_train_config.yaml")
    if config is None:
        return CONTROL_NAMES
    import yaml

    data = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data", {})
    return tuple(data.get("conditions") or CONTROL_NAMES)


class UnknownConditionError(ConfigError):
    """A condition name or value the model was not trained with; the message lists the valid ones."""


class GenerationBudgetError(ConfigError):
    """``max_new_tokens`` cannot hold the requested tune; raised before generating."""


def load_control_vocabulary(name_or_path: str | Path) -> ControlVocabulary:
    """The vocabulary saved with a model: a local folder, or a hub repository (cached or downloadable)."""
    path = _model_file(name_or_path, CONTROL_VOCABULARY_FILE)
    if path is None:
        raise ConfigError(f"model {str(name_or_path)!r} has no {CONTROL_VOCABULARY_FILE}: it was not trained by "
                          "train/finetune.py (or was copied or published without it); conditions cannot be checked")
    return ControlVocabulary.load(path)


def _label(name: str, value: Any) -> str:
    """User spelling -> the corpus label: ``key="D"`` -> ``"D major"``, ``bars=16`` -> ``"16"``."""
    if name == "key":
        return parse_key(str(value)).label
    if name == "bars":
        return bars_bucket(int(value))
    if name in ("rhythm", "origin", "composer", "tempo"):
        return str(value).strip().lower()
    return str(value).strip()


class AbcGenerationPipeline(Pipeline):
    """``pipeline("abc-generation", model=...)``; see the module docstring."""

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vocabulary = load_control_vocabulary(self.model.name_or_path)
        self.trained_conditions = trained_conditions(self.model.name_or_path)

    def __call__(self, prompt: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        """``prompt``: optional opening bars (ABC body, or a whole tune whose header must agree)."""
        return super().__call__(prompt or "", **kwargs)

    def infill(self, abc: str, first_bar: int, last_bar: int, *, attempts: int = 8, seed: int = 0,
               **kwargs: Any) -> dict[str, Any]:
        """Rewrite bars ``first_bar..last_bar`` (1-based, inclusive) of a single-voice tune, keeping the bars
        around them. The new bars are generated after the bars before them (a causal model cannot read
        the bars after, so the splice is checked instead): each attempt is spliced in and checked with the
        corpus's checks, and the first valid result is returned (``attempts`` seeds from ``seed``)."""
        from abcgen.generation.sampling import check_sample
        from abcgen.notation import events as ev
        from abcgen.notation.bars import events_by_voice
        from abcgen.notation.tune import normalise_tune

        tune = normalise_tune(abc)
        events = tune.events()
        if len(events_by_voice(events)) > 1:
            raise ConfigError("infilling supports single-voice tunes")
        segments, current = [], ""
        for event in events:
            current += event.text
            if event.kind == ev.BAR:
                segments.append(current)
                current = ""
        if current.strip():
            segments.append(current)
        music = [i for i, seg in enumerate(segments) if any(e.is_timed for e in _lex_segment(seg, tune))]
        if not 1 <= first_bar <= last_bar <= len(music):
            raise ConfigError(f"bars {first_bar}..{last_bar} are not within the tune's {len(music)} bars")
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
            valid, problems, bars = check_sample(spliced, with_bars=True)
            last = {"abc": spliced.rstrip() + "\n", "valid": valid, "problems": problems, "bars": bars,
                    "infilled_bars": (first_bar, last_bar), "attempts": attempt + 1}
            if valid:
                return last
        return last  # type: ignore[return-value]

    # --- parameters ------------------------------------------------------------------------------------

    def _sanitize_parameters(
        self,
        key: str | None = None,
        meter: str | None = None,
        unit_length: str | None = None,
        rhythm: str | None = None,
        origin: str | None = None,
        composer: str | None = None,
        tempo: str | None = None,
        bars: int | None = None,
        form: str | None = None,
        pickup: str | None = None,
        num_return_sequences: int = 1,
        temperature: float = 1.0,
        top_p: float = 0.95,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        constrained: bool = True,
        voices: int = 1,
        **unknown: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if unknown:
            raise UnknownConditionError(f"unknown argument(s) {sorted(unknown)}; conditions are "
                                        f"{', '.join(CONTROL_NAMES)}, plus num_return_sequences, temperature, "
                                        "top_p, max_new_tokens, seed, constrained, pickup, voices")
        requested = {"key": key, "meter": meter, "unit_length": unit_length, "rhythm": rhythm, "origin": origin,
                     "composer": composer, "tempo": tempo, "bars": bars, "form": form}
        conditions = {name: value for name, value in requested.items() if value not in (None, "")}
        if isinstance(voices, bool) or not isinstance(voices, int) or voices < 1:
            raise ConfigError(f"voices={voices!r}: give the number of voices as a whole number, 1 or more")
        preprocess = {"conditions": conditions, "pickup": pickup, "max_new_tokens": max_new_tokens, "voices": voices}
        forward = {"num_return_sequences": num_return_sequences, "temperature": temperature, "top_p": top_p,
                   "seed": seed, "constrained": constrained}
        return preprocess, forward, {}

    def check_conditions(self, conditions: dict[str, Any]) -> dict[str, str]:
        """Conditions as corpus labels, each checked against the model's vocabulary."""
        labels: dict[str, str] = {}
        for name, value in conditions.items():
            if name not in self.trained_conditions:
                if name in STRUCTURAL:
                    continue  # written into the header / enforced by the constraint; no prefix token
                raise UnknownConditionError(f"the model was trained without {name!r} conditioning; it follows "
                                            f"{', '.join(self.trained_conditions)} (and writes key, meter, "
                                            "unit_length, bars and form into the tune itself)")
            if name not in self.vocabulary.values:
                raise UnknownConditionError(f"condition {name!r} is not one the model knows; it knows "
                                            f"{', '.join(self.vocabulary.values)}")
            label = _label(name, value)
            valid = [v for v in self.vocabulary.values[name] if v != "other"]
            if name == "bars" and label not in valid:
                # The number of bars is enforced by constrained decoding; its control token is only a hint.
                warnings.warn(f"bars={value} (bucket {label!r}) was not seen in training; generating without "
                              "the bars control token (the constraint still writes exactly that many bars)",
                              stacklevel=3)
                continue
            if label not in self.vocabulary.values[name] or label == "other":
                raise UnknownConditionError(f"{name}={value!r} (label {label!r}) was not seen in training; valid "
                                            f"values: {', '.join(valid[:40])}{' ...' if len(valid) > 40 else ''}")
            labels[name] = label
        combination = "|".join(labels.get(n, "") for n in ("key", "meter", "rhythm"))
        if all(labels.get(n) for n in ("key", "meter", "rhythm")) and combination not in self.vocabulary.combinations:
            warnings.warn(f"the combination key/meter/rhythm = {combination} never occurs in the training data; "
                          "the model may follow it loosely", stacklevel=3)
        return labels

    # --- preprocess: prompt ids and the tune's frame ------------------------------------------------------

    def preprocess(self, prompt: str, conditions: dict[str, Any], pickup: str | None,
                   max_new_tokens: int | None, voices: int = 1) -> dict[str, Any]:
        from abcgen.tokenization.extend import abc_to_ids
        from abcgen.training.data import bos_ids

        if voices > 1 and prompt.strip():
            raise ConfigError(f"voices={voices} cannot be combined with a melody prompt: multi-voice generation "
                              "writes every voice from the first bar (give no prompt, or continue a single voice)")
        frame = self._frame(prompt, conditions, pickup)
        labels = self.check_conditions({k: v for k, v in conditions.items() if k in self.vocabulary.values})
        prefix = self.vocabulary.prefix(labels)
        definitions = "".join(f"V:{k}\n" for k in range(1, voices + 1)) if voices > 1 else ""
        header = (f"X:1\nM:{frame['meter_text']}\nL:{frame['unit_text']}\n{definitions}K:{frame['key_text']}\n")
        prefix_ids = bos_ids(self.tokenizer) + abc_to_ids(self.tokenizer, prefix)
        # several voices: the body of voice 1 follows its V: line
        ids = prefix_ids + abc_to_ids(self.tokenizer, header + frame["body"] + ("V:1\n" if voices > 1 else ""))
        if max_new_tokens is None:
            # Room for the requested bars: ~12 tokens a bar is generous for folk tunes at L:1/8.
            max_new_tokens = max(64, 12 * int(frame["bars"] or 32) + 16)
        return {"input_ids": torch.tensor([ids]), "frame": frame, "labels": labels, "header": header,
                "max_new_tokens": max_new_tokens, "voices": voices, "prefix_ids": prefix_ids}

    def _frame(self, prompt: str, conditions: dict[str, Any], pickup: str | None) -> dict[str, Any]:
        """Meter, unit length, key, bars and the melody prompt's body, all checked before generating."""
        from abcgen.notation.checks import check_tune
        from abcgen.notation.tune import normalise_tune

        body = ""
        open_repeat = False
        prompt = prompt.strip("\n")
        header_meter = header_key = header_unit = None
        if prompt:
            text = prompt if re.search(r"^K:", prompt, re.MULTILINE) else (
                f"X:1\nM:{conditions.get('meter', '4/4')}\nL:{conditions.get('unit_length', '1/8')}\n"
                f"K:{conditions.get('key', 'C')}\n{prompt}\n")
            try:
                tune = normalise_tune(text)
            except AbcParseError as exc:
                raise AbcParseError(f"the melody prompt is not valid ABC: {exc.reason}", line=exc.line,
                                    column=exc.column, bar=exc.bar) from exc
            header_meter, header_key, header_unit = tune.get("M"), tune.get("K"), tune.get("L")
            check = check_tune(tune)  # the corpus's checks; truncation is covered by the bar-line rule below
            # A prompt may stop inside a repeat ("|:dAF DFA|"): the constraint then has to close it.
            open_repeat = any("never closed" in p for p in check.repeats)
            problems = check.bar_problems + [p for p in check.repeats if "never closed" not in p]
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
        prompt_bars = body.count("|") - body.count("||") if body else 0
        return {"meter": meter, "meter_text": meter_text, "unit": unit, "unit_text": unit_text,
                "key": key, "key_text": format_key(key), "bars": int(bars) if bars is not None else None,
                "form": form, "pickup": pickup_length or Fraction(0), "body": body, "prompt_bars": prompt_bars,
                "open_repeat": open_repeat}

    # --- forward: batched, seeded generation ---------------------------------------------------------------

    def _forward(self, model_inputs: dict[str, Any], num_return_sequences: int, temperature: float, top_p: float,
                 seed: int | None, constrained: bool) -> dict[str, Any]:
        from transformers import LogitsProcessorList

        input_ids = model_inputs["input_ids"].to(self.model.device).repeat(num_return_sequences, 1)
        frame, max_new_tokens = model_inputs["frame"], model_inputs["max_new_tokens"]
        processors = LogitsProcessorList()
        if constrained:
            from abcgen.generation.constraints import AbcConstraint, AbcLogitsProcessor

            try:
                constraints = [
                    AbcConstraint(self.tokenizer, meter=frame["meter"], unit_length=frame["unit"],
                                  key=frame["key_text"], num_bars=_remaining_bars(frame),
                                  max_new_tokens=max_new_tokens, pickup=frame["pickup"] if not frame["body"] else 0,
                                  form=frame["form"], open_repeat=frame["open_repeat"])
                    for _ in range(num_return_sequences)
                ]
            except ConfigError as exc:
                if str(exc).startswith("max_new_tokens="):
                    raise GenerationBudgetError(str(exc)) from exc
                raise
            processors.append(AbcLogitsProcessor(constraints, [input_ids.shape[1]] * num_return_sequences))
        rng_state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(seed)
        try:
            output = self.model.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True, temperature=temperature,
                top_p=top_p, max_new_tokens=max_new_tokens, logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            )
            generated = output[:, input_ids.shape[1]:].cpu()
            voice_ids = [[row] for row in generated.tolist()]
            for voice in range(2, model_inputs["voices"] + 1):
                self._next_voice(model_inputs, voice, voice_ids, temperature, top_p, constrained)
        finally:
            if seed is not None:
                torch.random.set_rng_state(rng_state)
        out = {"generated": generated, **model_inputs, "constrained": constrained}
        if model_inputs["voices"] > 1:
            out["voice_ids"] = voice_ids
        return out

    def _voice_body(self, voices: list[list[int]]) -> str:
        """The body of the voices written so far: ``V:1``, voice 1's bars, ``V:2``, ... (each voice's text
        up to its EOS, stripped, on lines of its own)."""
        from abcgen.tokenization.extend import ids_to_abc

        return "".join(f"V:{k}\n{ids_to_abc(self.tokenizer, _until_eos(ids, self.tokenizer)).strip()}\n"
                       for k, ids in enumerate(voices, 1))

    def _next_voice(self, model_inputs: dict[str, Any], voice: int, voice_ids: list[list[list[int]]],
                    temperature: float, top_p: float, constrained: bool) -> None:
        """Generate voice ``voice`` (2, 3, ...) of every tune after the voices before it, in one left-padded
        batch; with constraints, each row follows the bar template of its own voice 1. Appends the new
        rows' ids to ``voice_ids``."""
        from transformers import LogitsProcessorList

        from abcgen.tokenization.extend import abc_to_ids

        frame, max_new_tokens = model_inputs["frame"], model_inputs["max_new_tokens"]
        prompts = [model_inputs["prefix_ids"] + abc_to_ids(self.tokenizer, model_inputs["header"]
                                                           + self._voice_body(rows) + f"V:{voice}\n")
                   for rows in voice_ids]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.model.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.model.device)
        processors = LogitsProcessorList()
        if constrained:
            from abcgen.generation.constraints import AbcConstraint, AbcLogitsProcessor, bar_template

            # Voice 1 fitted in max_new_tokens, so its template (same bar lines, fewest notes) fits too.
            constraints = [
                AbcConstraint(self.tokenizer, meter=frame["meter"], unit_length=frame["unit"], key=frame["key_text"],
                              num_bars=None, max_new_tokens=max_new_tokens, pickup=frame["pickup"],
                              bar_lines=bar_template(self.tokenizer, rows[0]))
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

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        from abcgen.generation.sampling import check_sample
        from abcgen.tokenization.extend import ids_to_abc

        frame = model_outputs["frame"]
        results = []
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        if model_outputs["voices"] > 1:
            for voices in model_outputs["voice_ids"]:
                body = self._voice_body(voices)
                abc = model_outputs["header"] + body
                valid, problems, bars = check_sample(abc, with_bars=True)
                generated = sum(len(_until_eos(ids, self.tokenizer)) for ids in voices)
                results.append({"abc": abc, "valid": valid, "problems": problems,
                                "conditions": model_outputs["labels"], "bars": bars,
                                "constrained": model_outputs["constrained"], "generated_tokens": generated,
                                "continuation": body, "voices": len(voices)})
            return results
        for row in model_outputs["generated"]:
            ids = row.tolist()
            # tokens the model really generated: up to and including EOS (the rest is batch padding)
            generated = next((i + 1 for i, t in enumerate(ids) if t == eos), len(ids) - sum(t == pad for t in ids))
            continuation = ids_to_abc(self.tokenizer, ids)
            abc = model_outputs["header"] + frame["body"] + continuation
            abc = abc.rstrip() + "\n"
            valid, problems, bars = check_sample(abc, with_bars=True)
            results.append({"abc": abc, "valid": valid, "problems": problems, "conditions": model_outputs["labels"],
                            "bars": bars, "constrained": model_outputs["constrained"], "generated_tokens": generated,
                            "continuation": continuation})
        return results


def _until_eos(ids: list[int], tokenizer: Any) -> list[int]:
    """A generated row up to and including its EOS (the rest is batch padding); pad ids dropped when
    there is no EOS."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos in ids:
        return ids[: ids.index(eos) + 1]
    return [t for t in ids if t != pad]


def _lex_segment(text: str, tune: Any) -> list[Any]:
    from abcgen.notation.lexer import lex_body

    return lex_body(text, tune.unit_length, tune.meter)


def _remaining_bars(frame: dict[str, Any]) -> int | None:
    if frame["bars"] is None:
        return None
    remaining = frame["bars"] - frame["prompt_bars"]
    if remaining < 1:
        raise ConfigError(f"the melody prompt already has {frame['prompt_bars']} bars; bars={frame['bars']} leaves "
                          "nothing to generate")
    return remaining


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def register_pipeline() -> None:
    """Register ``abc-generation`` with transformers (``import abcgen`` does it)."""
    from transformers import AutoModelForCausalLM
    from transformers.pipelines import PIPELINE_REGISTRY

    if TASK not in PIPELINE_REGISTRY.supported_tasks:
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=AbcGenerationPipeline, pt_model=AutoModelForCausalLM,
                                            type="text")


__all__ = ["AbcGenerationPipeline", "AbcgenError", "GenerationBudgetError", "UnknownConditionError",
           "load_control_vocabulary", "register_pipeline"]

# Importing this module registers the task (abcgen/_lazy_registration.py imports it when transformers'
# pipelines are first imported).
register_pipeline()
