"""Tunes from a ``MusicVAE``'s latent space: decode latents, sample the prior, encode tunes, interpolate.

Every decoding goes through ``model.generate(..., latent=z)`` with the prompt the VAE was trained on
(``[BOS] + control prefix + header``, the header written as the ``abc-generation`` pipeline writes it) and,
when ``constrained``, the pipeline's ``AbcLogitsProcessor`` unchanged -- so every tune decoded under
constraints is valid ABC for our checker and for abc2midi (the constraint's grammar: single notes and
rests, bar lines, repeats and endings). Each result is checked with ``check_sample``.

**Interpolation** (``interpolate``): both tunes are cut as the model was trained (the whole tune, or its
first ``segment_bars`` bars) and encoded to their posterior means; the path between the two means is
spherical (``abcgen.models.vae.slerp``: it keeps the latent's norm where the decoder has seen latents),
with ``steps`` points including both ends. Point ``k`` is decoded greedily -- so the ends are the model's
reconstructions of the two tunes, and the path changes only because the latent does -- in the frame of the
nearer tune (key, unit length, pickup and conditions of ``A`` for fractions below 1/2, of ``B`` from
1/2 on); the number of bars moves linearly from ``A``'s to ``B``'s. The tunes must share the meter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from abcgen.atomic import atomic_output_dir, check_output_dir
from abcgen.controls import ControlVocabulary, bars_bucket
from abcgen.corpus.labels import header_labels, normalise_meter
from abcgen.corpus.sources import read_text
from abcgen.errors import ConfigError
from abcgen.generation.pipeline import trained_conditions
from abcgen.generation.sampling import check_sample, load_error
from abcgen.grammar import AbcConstraint, AbcLogitsProcessor
from abcgen.grammar.rules import LEGACY_RULES
from abcgen.model_folder import has_tokenizer
from abcgen.models.vae import MusicVAE, sample_latents, slerp
from abcgen.models.vae_config import MODEL_TYPE
from abcgen.notation.keys import parse_key
from abcgen.notation.tune import normalise_tune, split_tunes
from abcgen.tokenization.extend import abc_to_ids, ids_to_abc
from abcgen.training.vae_data import WHOLE_TUNE_CONDITIONS, TuneFrame, count_bars, prompt_ids, segment_tune

log = logging.getLogger(__name__)


@dataclass
class LatentTune:
    """A decoded tune: its ABC (header + body), whether it passes ``check_sample`` and why not, where it
    lies on an interpolation path (``fraction``; None for a prior sample) and the latent decoded."""

    abc: str
    valid: bool
    problems: list[str] = field(default_factory=list)
    fraction: float | None = None
    latent: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class EncodedTune:
    """A tune as the VAE reads it: its frame, the segment body encoded and its full bars, the conditions
    read from its header, and the posterior mean ``mu`` ``(D,)``."""

    frame: TuneFrame
    body: str
    body_ids: list[int]
    num_bars: int
    labels: dict[str, str]
    mu: torch.Tensor


def load_vae(folder: str | Path) -> MusicVAE:
    """The ``MusicVAE`` saved in ``folder`` (``train/finetune.py``'s ``final/`` of a ``model.architecture: vae``
    run), in eval mode; ``ConfigError`` when the folder holds another kind of model."""
    import json


    if not Path(folder).is_dir():
        raise ConfigError(f"model folder {str(folder)!r} does not exist: give the final/ folder of a VAE run "
                          "(train/finetune.py with model.architecture=vae)")
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise ConfigError(f"{str(folder)!r} has no config.json: give the final/ folder of a VAE run")
    model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    if model_type != MODEL_TYPE:
        raise ConfigError(f"{str(folder)!r} holds a {model_type!r} model, not a MusicVAE ({MODEL_TYPE!r}): latent "
                          "decoding needs a model trained with model.architecture=vae")
    try:
        return MusicVAE.from_pretrained(str(folder)).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise load_error(folder, exc) from exc


def load_vae_tokenizer(folder: str | Path) -> Any:
    """The tokenizer saved with a VAE; ``ConfigError`` naming the folder when it has none."""
    from transformers import AutoTokenizer


    if not has_tokenizer(folder):
        raise ConfigError(f"model folder {str(folder)!r} has no tokenizer (tokenizer.json or tokenizer.model, with "
                          "tokenizer_config.json): save it there with tokenizer.save_pretrained(FOLDER)")
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise load_error(folder, exc) from exc


def read_first_tune(path: str | Path) -> str:
    """The first tune of an ABC file (logged when it holds several); ``ConfigError`` naming the file when it
    is missing, unreadable or holds no tune."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ABC file {str(path)!r} does not exist (or is not a file): give the path of an .abc file")
    text, reason = read_text(path)
    tunes = split_tunes(text) if text is not None else []
    if not tunes:
        raise ConfigError(f"{str(path)!r}: no ABC tune to interpolate ({reason or 'no X:/K: tune in the file'})")
    if len(tunes) > 1:
        log.info("%s holds %d tunes; interpolating its first", path, len(tunes))
    return tunes[0].text


def interpolate_to_folder(model_dir: str | Path, a: str | Path, b: str | Path, out: str | Path, *, steps: int = 5,
                          seed: int = 0, constrained: bool = True, max_new_tokens: int | None = None,
                          overwrite: bool = False) -> dict[str, Any]:
    """``abcgen interpolate``: the tunes on the latent path between the first tunes of files ``a`` and ``b``,
    written to ``out`` (``point_NN.abc`` and ``summary.json``, whole or not at all); returns the summary.
    The numbers, the output folder (a used one only with ``overwrite``), both files and the model folder
    are checked before any decoding."""
    import json


    for name, value, low in (("steps", steps, 2), ("seed", seed, 0), ("max_new_tokens", max_new_tokens, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"{name}={value!r}: give a whole number, {low} or more")
    out = Path(out)
    check_output_dir(out, overwrite=overwrite)
    abc_a, abc_b = read_first_tune(a), read_first_tune(b)
    model = load_vae(model_dir)
    tokenizer = load_vae_tokenizer(model_dir)
    tunes = interpolate_tunes(model, tokenizer, abc_a, abc_b, steps, seed=seed, constrained=constrained,
                              max_new_tokens=max_new_tokens)
    entries = []
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for index, tune in enumerate(tunes):
            name = f"point_{index:02d}.abc"
            (tmp / name).write_text(tune.abc, encoding="utf-8")
            entries.append({"file": str(out / name), "fraction": tune.fraction, "valid": tune.valid,
                            "problems": tune.problems})
        summary = {"model": str(model_dir), "a": str(a), "b": str(b), "steps": steps, "seed": seed,
                   "constrained": constrained, "path": "spherical (slerp) between the posterior means",
                   "valid": sum(t.valid for t in tunes), "num": len(tunes), "tunes": entries}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _until_eos(ids: list[int], eos_id: int, pad_id: int | None) -> list[int]:
    """Generated ids up to and including EOS (the rest is batch padding); without EOS, pads dropped."""
    if eos_id in ids:
        return ids[: ids.index(eos_id) + 1]
    return [t for t in ids if t != pad_id]


@torch.no_grad()
def decode_latents(model: MusicVAE, tokenizer: Any, prompts: Sequence[list[int]], latents: torch.Tensor, *,
                   max_new_tokens: int, frames: Sequence[TuneFrame] | None = None,
                   num_bars: Sequence[int | None] | None = None, do_sample: bool = False, temperature: float = 1.0,
                   top_p: float = 1.0) -> list[list[int]]:
    """Decode one latent per prompt (``latents`` ``(N, D)``) in one left-padded batch; returns each row's
    generated ids up to and including EOS. With ``frames`` the decoding is constrained (one
    ``AbcConstraint`` per row: the frame's meter, unit length, key and pickup, and ``num_bars[i]`` bars, None
    = the model decides). Greedy unless ``do_sample``."""
    from transformers import LogitsProcessorList

    if len(prompts) != latents.shape[0]:
        raise ValueError(f"{len(prompts)} prompts but {latents.shape[0]} latents")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=model.device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    processors = LogitsProcessorList()
    if frames is not None:
        bars = list(num_bars) if num_bars is not None else [None] * len(frames)
        constraints = [AbcConstraint(tokenizer, meter=f.meter, unit_length=f.unit_length, key=f.key_text,
                                     num_bars=n, max_new_tokens=max_new_tokens, pickup=f.pickup,
                                     rules=LEGACY_RULES)  # phrase segments: no cadence, no forced layout
                       for f, n in zip(frames, bars, strict=True)]
        processors.append(AbcLogitsProcessor(constraints, width))
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
    was_training = model.training
    model.eval()
    try:
        output = model.generate(input_ids, attention_mask=attention, latent=latents.to(model.device, model.dtype),
                                max_new_tokens=max_new_tokens, logits_processor=processors,
                                pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, **sampling)
    finally:
        model.train(was_training)
    return [_until_eos(row, tokenizer.eos_token_id, pad) for row in output[:, width:].cpu().tolist()]


def decoded_tune(tokenizer: Any, header: str, ids: list[int], fraction: float | None = None,
                 latent: torch.Tensor | None = None) -> LatentTune:
    """The tune of generated body ``ids`` under ``header``, checked with ``check_sample``."""
    abc = (header + ids_to_abc(tokenizer, ids)).rstrip() + "\n"
    check = check_sample(abc)
    return LatentTune(abc=abc, valid=check.valid, problems=check.problems, fraction=fraction,
                      latent=[round(float(v), 6) for v in latent] if latent is not None else [])


def model_conditions(model: MusicVAE) -> tuple[ControlVocabulary, tuple[str, ...]]:
    """The control vocabulary and the condition names the model was trained with, read from its folder
    (``control_vocabulary.json``, ``abcgen_train_config.yaml``); an empty vocabulary (no conditions) for a
    model that has neither."""
    folder = Path(str(model.name_or_path or ""))
    if folder.is_dir() and (folder / "control_vocabulary.json").is_file():
        return ControlVocabulary.load(folder), trained_conditions(folder)
    return ControlVocabulary(), ()


def _header_conditions(abc: str, vocab: ControlVocabulary, names: Sequence[str]) -> dict[str, str]:
    """The conditions a tune's own header gives (key, meter, rhythm, ...), limited to ``names``."""
    labels = header_labels(normalise_tune(abc))
    return {name: str(labels[name]) for name in names
            if name in vocab.values and name in labels and labels[name] not in ("", 0)}


@torch.no_grad()
def encode_tunes(model: MusicVAE, tokenizer: Any, abcs: Sequence[str]) -> list[EncodedTune]:
    """Each tune's frame, encoded segment and posterior mean. Tunes are cut as the model was trained
    (``config.segment_bars``): a model of N-bar phrases encodes a tune's first N bars (logged)."""
    vocab, names = model_conditions(model)
    encoded = []
    was_training = model.training
    model.eval()
    try:
        for index, abc in enumerate(abcs):
            frame, bodies = segment_tune(abc, model.config.segment_bars)
            if not bodies:
                raise ConfigError(f"tune {index + 1} has no music to encode")
            if len(bodies) > 1:
                log.info("tune %d: the model encodes %d-bar segments; using the first of %d", index + 1,
                         model.config.segment_bars, len(bodies))
            body_ids = abc_to_ids(tokenizer, bodies[0])
            if len(body_ids) > model.config.max_tokens:
                log.warning("tune %d has %d body tokens, more than the %d the model was trained on: expect a poor "
                            "reconstruction", index + 1, len(body_ids), model.config.max_tokens)
            mu, _ = model.encode(torch.tensor([body_ids], device=model.device))
            encoded.append(EncodedTune(frame=frame, body=bodies[0], body_ids=body_ids,
                                       num_bars=max(1, count_bars(bodies[0], frame)),
                                       labels=_header_conditions(abc, vocab, names), mu=mu[0].float().cpu()))
    finally:
        model.train(was_training)
    return encoded


def _prompt(tokenizer: Any, model: MusicVAE, vocab: ControlVocabulary, names: Sequence[str], frame: TuneFrame,
            labels: Mapping[str, str], num_bars: int | None) -> list[int]:
    """The decoder's prompt for one tune: the conditions the model was trained with (``names``; ``bars`` for
    a whole-tune model, from ``num_bars``), then the frame's header."""
    labels = dict(labels)
    if model.config.segment_bars:
        labels = {k: v for k, v in labels.items() if k not in WHOLE_TUNE_CONDITIONS}
    elif num_bars and "bars" in names and "bars" in vocab.values:
        labels["bars"] = bars_bucket(num_bars)
    return prompt_ids(tokenizer, vocab, labels, frame.header)


def interpolate_tunes(model: MusicVAE, tokenizer: Any, abc_a: str, abc_b: str, steps: int, seed: int = 0,
                      constrained: bool = True, max_new_tokens: int | None = None, sample: bool = False,
                      temperature: float = 1.0, top_p: float = 0.95) -> list[LatentTune]:
    """``steps`` tunes along the spherical path between the posterior means of ``abc_a`` and ``abc_b``
    (both ends included), each checked; see the module docstring. Decoding is greedy (deterministic: the
    ends reconstruct the tunes as well as the model can) unless ``sample``, which draws each token
    (``temperature``, ``top_p``) from the global RNG seeded with ``seed`` and restored afterwards.
    Raises ``ConfigError`` when the meters differ or ``steps < 2``."""
    if steps < 2:
        raise ConfigError(f"steps={steps}: an interpolation needs at least 2 points (the two tunes)")
    a, b = encode_tunes(model, tokenizer, [abc_a, abc_b])
    meter_a = normalise_meter(a.frame.meter, a.frame.meter_text)
    meter_b = normalise_meter(b.frame.meter, b.frame.meter_text)
    if meter_a != meter_b:
        raise ConfigError(f"the tunes are in different meters (M:{a.frame.meter_text} and M:{b.frame.meter_text}); "
                          "interpolation decodes bar by bar in one meter: pick two tunes in the same meter")
    fractions = [k / (steps - 1) for k in range(steps)]
    latents = torch.stack([slerp(a.mu, b.mu, t) for t in fractions])
    nearer = [a if t < 0.5 else b for t in fractions]
    bars = [max(1, round((1 - t) * a.num_bars + t * b.num_bars)) for t in fractions]
    budget = max_new_tokens or max(64, 2 * max(len(a.body_ids), len(b.body_ids)) + 16)
    vocab, names = model_conditions(model)
    prompts = [_prompt(tokenizer, model, vocab, names, tune.frame, tune.labels, n)
               for tune, n in zip(nearer, bars, strict=True)]
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        generated = decode_latents(model, tokenizer, prompts, latents, max_new_tokens=budget,
                                   frames=[tune.frame for tune in nearer] if constrained else None, num_bars=bars,
                                   do_sample=sample, temperature=temperature, top_p=top_p)
    finally:
        torch.random.set_rng_state(rng_state)
    results = [decoded_tune(tokenizer, tune.frame.header, ids, t, z)
               for tune, ids, t, z in zip(nearer, generated, fractions, latents, strict=True)]
    for result in results:
        if not result.valid:
            log.warning("interpolation point %.2f is not valid ABC: %s", result.fraction, result.problems[:2])
    return results


def interpolate(model: MusicVAE, tokenizer: Any, abc_a: str, abc_b: str, steps: int, seed: int = 0,
                constrained: bool = True) -> list[str]:
    """The ABC texts of ``interpolate_tunes`` (greedy decoding; that function also says whether each
    is valid and can sample instead)."""
    return [tune.abc for tune in interpolate_tunes(model, tokenizer, abc_a, abc_b, steps, seed, constrained)]


def sample_prior(model: MusicVAE, tokenizer: Any, *, meter: str, key: str, num: int = 1, seed: int = 0,
                 unit_length: str | None = None, bars: int | None = None,
                 conditions: Mapping[str, str] | None = None, constrained: bool = True,
                 max_new_tokens: int | None = None, temperature: float = 1.0, top_p: float = 0.95) -> list[LatentTune]:
    """``num`` tunes decoded from ``z ~ N(0, I)`` (``sample_latents(num, D, seed)``: the same seed gives the
    same latents), sampled token by token (temperature, top-p; the global RNG seeded with ``seed`` and
    restored afterwards) under constrained decoding in the given meter, key and unit length, with exactly
    ``bars`` bars (None: ``segment_bars`` for a phrase model, else the model decides within the budget).
    ``conditions``: further control values (``{"rhythm": "jig"}``) among those the model was trained with."""
    frame = TuneFrame.from_header(meter, unit_length, key)
    vocab, names = model_conditions(model)
    labels = {name: value for name, value in (conditions or {}).items() if name in names}
    unknown = sorted(set(conditions or {}) - set(labels))
    if unknown:
        raise ConfigError(f"conditions {unknown} were not trained on; this model knows {', '.join(names) or 'none'}")
    for name in ("key", "meter"):
        if name in names and name in vocab.values:
            labels.setdefault(name, _key_label(key) if name == "key" else _meter_label(frame))
    bars = bars if bars is not None else (model.config.segment_bars or None)
    budget = max_new_tokens or max(64, 12 * (bars or 16) + 16)
    latents = sample_latents(num, model.config.latent_size, seed)
    prompt = _prompt(tokenizer, model, vocab, names, frame, labels, bars)
    rng_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        generated = decode_latents(model, tokenizer, [prompt] * num, latents, max_new_tokens=budget,
                                   frames=[frame] * num if constrained else None, num_bars=[bars] * num,
                                   do_sample=True, temperature=temperature, top_p=top_p)
    finally:
        torch.random.set_rng_state(rng_state)
    return [decoded_tune(tokenizer, frame.header, ids, None, z) for ids, z in zip(generated, latents, strict=True)]


def _key_label(key: str) -> str:
    """The corpus label of a key as a user writes it: ``"D"`` -> ``"D major"``."""
    return parse_key(key).label


def _meter_label(frame: TuneFrame) -> str:
    return normalise_meter(frame.meter, frame.meter_text)


__all__ = ["EncodedTune", "LatentTune", "decode_latents", "decoded_tune", "encode_tunes", "interpolate",
           "interpolate_to_folder", "interpolate_tunes", "load_vae", "load_vae_tokenizer", "model_conditions",
           "read_first_tune", "sample_prior"]
