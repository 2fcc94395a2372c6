"""Tunes from a ``MusicGAN``: conditions -> latent draws -> rolls -> ABC (valid by construction) -> files.

The GAN writes windows of a fixed number of bars (``MusicGANConfig.bars``). A longer tune (``bars=``) is
made of consecutive windows, each from its own latent draw and the same conditions, cut to the requested
bar count: the windows do not know each other, so such a tune has no form across windows.

``abcgen generate --model GAN_FOLDER ...`` lands in ``run_generate_command`` (the command line branches
here when the folder's ``config.json`` says ``model_type: abcgen_gan``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from abcgen.corpus.labels import normalise_meter
from abcgen.errors import ConfigError
from abcgen.generation.sampling import check_sample
from abcgen.models.gan import NO_RHYTHM, MusicGAN
from abcgen.models.pianoroll import roll_to_abc
from abcgen.notation.keys import parse_key
from abcgen.notation.lexer import parse_fraction
from abcgen.notation.remi import abc2midi_check
from abcgen.render import render_abc

log = logging.getLogger(__name__)

# What a GAN can be asked for; the output is always written with L:1/8.
GAN_CONDITIONS = ("key", "meter", "rhythm", "unit_length")


@dataclass(frozen=True)
class GanRequest:
    """Resolved conditions: the key (text for ``K:``), its mode and the meter/rhythm labels the model knows."""

    key: str
    mode: str
    meter: str
    rhythm: str  # "" = none

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "meter": self.meter, **({"rhythm": self.rhythm} if self.rhythm else {})}


def resolve_conditions(model: MusicGAN, conditions: Mapping[str, Any]) -> GanRequest:
    """Check ``conditions`` (key, meter, rhythm; None or "" = the model's default) against what the model
    was trained on; ConfigError naming the valid values otherwise."""
    given = {name: str(value) for name, value in conditions.items() if value not in (None, "")}
    unknown = sorted(set(given) - set(GAN_CONDITIONS))
    if unknown:
        raise ConfigError(f"a MusicGAN is conditioned on key, meter and rhythm only; it cannot honour {unknown}: "
                          "leave them out")
    if given.get("unit_length", "1/8") != "1/8":
        raise ConfigError(f"unit_length {given['unit_length']!r}: a MusicGAN writes L:1/8; leave unit_length out")
    config = model.config
    key_text = given.get("key", config.default_key)
    key = parse_key(key_text)
    if not key.tonic:
        raise ConfigError(f"key {key_text!r} has no tonic: give one such as D, E minor or A dorian")
    meter_text = given.get("meter", config.default_meter)
    meter = normalise_meter(parse_fraction(meter_text), meter_text)
    rhythm = given.get("rhythm", "")
    model.condition_ids(key.mode, meter, rhythm)  # raises on a value the model never saw
    return GanRequest(key=key_text, mode=key.mode, meter=meter, rhythm=rhythm)


def generate_abc(model_dir_or_model: str | Path | MusicGAN, conditions: Mapping[str, Any], num: int, seed: int,
                 bars: int | None = None) -> list[str]:
    """``num`` tunes for ``conditions`` (``key``, ``meter``, ``rhythm``), reproducible from ``seed``.

    ``bars`` (default: the model's window) > the window: consecutive windows from independent latent draws,
    cut to ``bars``. Every tune passes our bar check and abc2midi by construction (see ``roll_to_abc``)."""
    model = model_dir_or_model if isinstance(model_dir_or_model, MusicGAN) else MusicGAN.from_pretrained(model_dir_or_model)
    if num < 1:
        raise ConfigError(f"num={num}: ask for at least one tune")
    window = model.config.bars
    bars = bars or window
    if bars < 1:
        raise ConfigError(f"bars={bars}: ask for at least one bar")
    request = resolve_conditions(model, conditions)
    per_tune = math.ceil(bars / window)
    ids = model.condition_ids(request.mode, request.meter, request.rhythm)
    latent = model.sample_latent(num * per_tune, seed)
    rolls = model.generate_rolls(latent, torch.tensor([ids] * (num * per_tune)))
    grid = model.config.grid
    # (num * per_tune, 2, window, steps, pitches) -> (num, 2, per_tune * window, steps, pitches), then cut.
    rolls = rolls.reshape(num, per_tune, *grid.shape).transpose(0, 2, 1, 3, 4, 5)
    rolls = rolls.reshape(num, 2, per_tune * window, grid.bar_steps, grid.num_pitches)[:, :, :bars]
    rhythm = request.rhythm if request.rhythm != NO_RHYTHM else ""
    return [roll_to_abc(np.ascontiguousarray(roll), grid, meter=request.meter, key=request.key, rhythm=rhythm)
            for roll in rolls]


def generate_to_folder(model_dir_or_model: str | Path | MusicGAN, conditions: Mapping[str, Any], *, num: int, seed: int,
                       out: str | Path, bars: int | None = None, render: str = "") -> dict[str, Any]:
    """Generate, check (our checker and abc2midi), write ``tune_NN.abc`` (+ ``render`` formats such as
    ``mid,wav``) and ``summary.json`` into ``out``; returns the summary."""
    model = model_dir_or_model if isinstance(model_dir_or_model, MusicGAN) else MusicGAN.from_pretrained(model_dir_or_model)
    request = resolve_conditions(model, conditions)
    tunes = generate_abc(model, conditions, num, seed, bars)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    formats = [f for f in render.split(",") if f]
    entries = []
    for index, abc in enumerate(tunes):
        path = out / f"tune_{index:02d}.abc"
        path.write_text(abc, encoding="utf-8")
        check = check_sample(abc)
        abc2midi = abc2midi_check(abc)
        entry = {"file": str(path), "valid": check.valid and not abc2midi, "problems": check.problems, "abc2midi": abc2midi,
                 "conditions": request.as_dict(), "num_bars": bars or model.config.bars}
        if formats:
            entry["rendered"] = {fmt: str(p) for fmt, p in render_abc(abc, path.with_suffix(""), formats).items()}
        entries.append(entry)
    summary = {"model": str(model_dir_or_model) if not isinstance(model_dir_or_model, MusicGAN) else "MusicGAN",
               "family": "gan", "seed": seed, "valid": sum(e["valid"] for e in entries), "num": len(entries),
               "tunes": entries}
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def run_generate_command(args: argparse.Namespace) -> int:
    """``abcgen generate`` for a GAN folder: the options a GAN cannot honour are refused, not ignored."""
    unsupported = [flag for flag, given in (("--prompt", args.prompt is not None), ("--voices", args.voices != 1),
                                            ("--pickup", args.pickup is not None), ("--form", args.form is not None),
                                            ("--unconstrained", args.unconstrained)) if given]
    if unsupported:
        raise ConfigError(f"{args.model} is a MusicGAN, which writes whole single-voice bars from noise: it cannot "
                          f"honour {', '.join(unsupported)}; leave them out")
    torch.set_num_threads(max(1, args.threads))
    conditions = {name: getattr(args, name) for name in ("key", "meter", "unit_length", "rhythm", "origin",
                                                          "composer", "tempo")}
    summary = generate_to_folder(args.model, conditions, num=args.num, seed=args.seed, out=args.out, bars=args.bars,
                                 render=args.render)
    print(f"{summary['valid']} of {summary['num']} tunes valid; written to {args.out}")
    return 0
