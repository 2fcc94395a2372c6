"""Plain conditioned sampling: control prefix + ``X:1`` (``tokenization.prompt``) -> ``model.generate`` -> ABC,
with a bar check (``check_sample``, one ``SampleCheck``).

This is what training logs at each evaluation and what the quickstart writes. It does not constrain
decoding, so a sample can fail the bar check; the share that passes is reported, not hidden.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from abcgen.atomic import atomic_output_dir, check_output_dir
from abcgen.controls import OTHER, ControlVocabulary
from abcgen.errors import AbcgenError, ConfigError, ToolNotFoundError
from abcgen.model_folder import check_model_folder, merged_weight_files, safetensors_problem
from abcgen.notation.checks import check_tune
from abcgen.notation.remi import abc_to_midi
from abcgen.notation.tune import normalise_tune
from abcgen.tokenization.prompt import FREE_HEADER, AbcPromptFormat

log = logging.getLogger(__name__)

# A model without position embeddings (the LSTM) has no length it was built for; more tokens than this in
# one call is taken for a typo (``--bars 100000``: hours of decoding), not a tune.
TOKEN_LIMIT_WITHOUT_POSITIONS = 65_536
# Where configs keep the number of positions a model reads (Llama/GPT-NeoX/Qwen, GPT-2, others).
_POSITION_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
_FIX_MODEL = "give the folder train/finetune.py wrote (OUTPUT_DIR/final) or a hub id OWNER/NAME"


def position_limit(model: Any) -> tuple[int, str]:
    """The most tokens (prompt + generated) ``model`` reads, and where that number comes from (for messages):
    its config's position count, else :data:`TOKEN_LIMIT_WITHOUT_POSITIONS`."""
    config = getattr(model, "config", None)
    for name in _POSITION_ATTRIBUTES:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, f"config.{name}"
    return TOKEN_LIMIT_WITHOUT_POSITIONS, "abcgen's limit for a model without positions"


def _looks_local(name: str) -> bool:
    """Whether a model name can only be a local path: a hub id is ``NAME`` or ``OWNER/NAME``."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", "") or \
        name.endswith("/")


def check_model_path(model: str | os.PathLike[str]) -> None:
    """Before loading: a local model folder must exist and hold everything generation reads (config,
    weights that are not truncated, tokenizer, control vocabulary); ``ConfigError`` naming the first
    missing piece and how to get it. A name that can only be a hub id is left to the loader."""
    path = Path(model).expanduser()
    if not path.exists():
        if _looks_local(str(model)):
            raise ConfigError(f"model folder {str(model)!r} does not exist: {_FIX_MODEL}")
        return
    if not path.is_dir():
        raise ConfigError(f"model {str(model)!r} is a file, not a model folder: {_FIX_MODEL}")
    missing = check_model_folder(path)
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise ConfigError(f"model folder {str(model)!r} is incomplete: {missing[0]}{more}")
    for weights in merged_weight_files(path):
        problem = safetensors_problem(weights)
        if problem:
            raise ConfigError(f"model folder {str(model)!r} cannot be loaded: {problem}; re-save or re-train it")


def load_error(model: str | os.PathLike[str], exc: BaseException) -> ConfigError:
    """A loader's exception (transformers, huggingface_hub, safetensors) as one line naming the model."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return ConfigError(f"cannot load model {str(model)!r} ({type(exc).__name__}: {first}): {_FIX_MODEL}")


def load_model_and_tokenizer(model: str | os.PathLike[str]) -> tuple[Any, Any]:
    """A causal LM and its tokenizer from a model folder (or hub id), checked first (:func:`check_model_path`);
    loader failures become one-line ``ConfigError``s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_path(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model))
        loaded = AutoModelForCausalLM.from_pretrained(str(model))
    except AbcgenError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise load_error(model, exc) from exc
    return loaded, tokenizer


@dataclass
class Sample:
    conditions: dict[str, str]
    abc: str
    bar_check_ok: bool
    problems: list[str] = field(default_factory=list)


@dataclass
class SampleCheck:
    """What ``check_sample`` found: ``valid`` when ``problems`` is empty; ``bars`` has one dict per bar
    with music (``index``, ``duration`` and ``meter`` as fraction strings of a whole note, ``ok``)."""

    valid: bool
    problems: list[str] = field(default_factory=list)
    bars: list[dict[str, Any]] = field(default_factory=list)


def check_sample(abc: str, *, num_bars: int | None = None) -> SampleCheck:
    """Normalise, lex, bar-check and repeat-check a generated tune with the corpus's own checks.

    With ``num_bars`` (the number of bars that was asked for) a tune with another number of bars does not
    pass: bars are counted as everywhere else (``BarReport.num_bars``: bars with music, a leading pickup not
    counted). The strict abc2midi checker is ``abcgen.notation.checks.abc2midi_check``."""
    bars: list[dict[str, Any]] = []
    try:
        check = check_tune(normalise_tune(abc))
        problems = check.problems
        bad = {p.bar for p in check.report.problems}
        bars = [{"index": b.index, "duration": str(b.duration), "meter": str(b.meter), "ok": b.index not in bad}
                for b in check.report.bars if b.has_notes]
        if num_bars is not None and check.report.num_bars != num_bars:
            problems = [*problems, f"{check.report.num_bars} bars, not the {num_bars} requested "
                                   "(a leading pickup is not counted)"]
    except AbcgenError as exc:
        problems = [str(exc)]
    return SampleCheck(not problems, list(problems), bars)


@torch.no_grad()
@contextlib.contextmanager
def sampling_state(model: Any, seed: int) -> Iterator[None]:
    """Sample in eval mode from the torch RNG seeded with ``seed``; the model's mode and the global RNG are
    restored afterwards, so sampling in the middle of training does not change the training run."""
    was_training = model.training
    model.eval()
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(rng_state)
        model.train(was_training)


def sample_tunes(model: Any, tokenizer: Any, vocab: ControlVocabulary, conditions: Sequence[Mapping[str, str]], *,
                 max_new_tokens: int = 256, seed: int = 0, top_p: float = 0.95, temperature: float = 1.0) -> list[Sample]:
    """One tune per conditions mapping. The global torch RNG is restored afterwards, so sampling in the
    middle of training does not change the training run."""
    fmt = AbcPromptFormat(tokenizer, vocab)
    out = []
    with sampling_state(model, seed):
        for labels in conditions:
            # The prompt contract: [BOS] + prefix, then X:1 -- the model writes the rest of the header.
            ids = torch.tensor([fmt.prompt_ids(labels, FREE_HEADER)], device=model.device)
            generated = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=True, top_p=top_p,
                                       temperature=temperature, pad_token_id=tokenizer.pad_token_id,
                                       eos_token_id=tokenizer.eos_token_id)
            abc = FREE_HEADER + fmt.decode(generated[0, ids.shape[1]:].tolist())
            check = check_sample(abc)
            out.append(Sample(dict(labels), abc, check.valid, check.problems))
    return out


def sample_to_folder(model_dir: str | os.PathLike[str], out: str | os.PathLike[str], conditions: Mapping[str, str], *,
                     num: int = 4, max_new_tokens: int = 384, seed: int = 0, midi: bool = False,
                     overwrite: bool = False) -> dict[str, Any]:
    """``abcgen sample``: ``num`` tunes sampled under ``conditions`` into ``out`` (``tune_NN.abc``, with
    ``midi`` also ``tune_NN.mid``, and ``samples.json``); returns the summary written.

    Everything is checked before sampling: the numbers, the output folder (a used one only with
    ``overwrite``), abc2midi when ``midi``, the model folder, the conditions against its vocabulary and
    the request against the model's positions. The folder is written whole or not at all
    (``abcgen.atomic``)."""
    for name, value, low in (("num", num, 1), ("max_new_tokens", max_new_tokens, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name}={value!r}: give a whole number, {low} or more")
    out = Path(out)
    check_output_dir(out, overwrite=overwrite)
    if midi and shutil.which("abc2midi") is None:
        raise ToolNotFoundError("abc2midi not found on PATH (needed for --midi); install it with: "
                                "apt-get install abcmidi")
    check_model_path(model_dir)
    vocab = ControlVocabulary.load(model_dir)
    for name, value in conditions.items():
        if name not in vocab.values:
            raise ConfigError(f"unknown condition {name!r}; this model knows {', '.join(vocab.values)}")
        if vocab.normalise(name, value) == OTHER != value:  # "slipjig" finds "slip jig"; a rare value is "other"
            raise ConfigError(f"condition {name}={value!r} is not in the model's vocabulary; valid values: "
                              f"{', '.join(list(vocab.values[name])[:30])}")
    conditions = {name: vocab.normalise(name, value) for name, value in conditions.items()}  # the corpus spelling
    model, tokenizer = load_model_and_tokenizer(model_dir)
    _check_sample_budget(model, tokenizer, vocab, conditions, max_new_tokens)
    samples = sample_tunes(model, tokenizer, vocab, [dict(conditions)] * num, max_new_tokens=max_new_tokens,
                           seed=seed)
    entries = []
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for index, sample in enumerate(samples):
            name = f"tune_{index:02d}"
            (tmp / f"{name}.abc").write_text(sample.abc, encoding="utf-8")
            entry: dict[str, Any] = {"file": str(out / f"{name}.abc"), "conditions": sample.conditions,
                                     "bar_check_ok": sample.bar_check_ok, "problems": sample.problems[:5]}
            if midi:
                try:
                    abc_to_midi(sample.abc, tmp / f"{name}.mid")
                    entry["midi"] = str(out / f"{name}.mid")
                except AbcgenError as exc:  # an untrained model's tune abc2midi cannot read: say so, keep going
                    entry["midi_error"] = str(exc)
            entries.append(entry)
        summary = {"passed_bar_check": sum(s.bar_check_ok for s in samples), "num": len(samples),
                   "samples": entries}
        (tmp / "samples.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _check_sample_budget(model: Any, tokenizer: Any, vocab: ControlVocabulary, conditions: Mapping[str, str],
                         max_new_tokens: int) -> None:
    prompt = len(AbcPromptFormat(tokenizer, vocab).prompt_ids(conditions, FREE_HEADER))
    limit, source = position_limit(model)
    if prompt + max_new_tokens > limit:
        raise ConfigError(f"max_new_tokens={max_new_tokens} needs {prompt + max_new_tokens} tokens with the "
                          f"{prompt}-token prompt but the model reads at most {limit} ({source}): give "
                          f"max_new_tokens <= {limit - prompt}")
