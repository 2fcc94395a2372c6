"""``abcgen listen prepare``: render the tunes of a listening test and write its balanced, blind trials.

Every tune is normalised (directives such as ``%%MIDI program`` dropped, so every clip has the same
instrument), given the study's tempo for its rhythm (``Q:`` replaced: a real tune's own tempo would tell
the rater which is which), rendered to WAV with one soundfont, and cut to the same musical length: the
duration of its first ``bars`` bars (a pickup included) at that tempo, with a short fade-out. Repeats are
played as written, so the clip is the first ``bars`` bars' worth of music as heard.

The study folder::

    STUDY/study.json     systems, clips (system, source, tune), trials, settings
    STUDY/clips/c007.wav anonymous clip names, numbered in a shuffled order (the name tells nothing)

Trials (each rater hears all of them, in an order of their own, drawn when they start):

* ``ab`` -- a generated tune against a real one, each real tune used as evenly as possible, the real tune
  on side A in half of the pairs. Questions: which would you rather play, which was written by a person,
  and whether A and B are the same tune.
* ``rating`` -- one clip rated 1-5 for melody, rhythm, structure, overall.
* ``attention`` -- a real tune against itself, asked like an ``ab`` trial: a rater who says they are not the
  same tune was not listening, and is excluded from the analysis (and counted).
"""

from __future__ import annotations

import json
import logging
import math
import random
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from abcgen.atomic import atomic_output_dir, check_output_dir
from abcgen.corpus.sources import read_text
from abcgen.errors import AbcgenError, ConfigError
from abcgen.notation.bars import counted_bars
from abcgen.notation.checks import check_tune
from abcgen.notation.tune import Tune, normalise_tune, split_tunes
from abcgen.render import check_render_request, find_soundfont, render_abc

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
CLIPS_DIR = "clips"
REAL = "real"
STUDY_VERSION = 1

# Tempo per rhythm (ABC Q: text): typical session speeds, a little slow so a listener can follow a synth.
TEMPI: dict[str, str] = {
    "jig": "3/8=112", "slide": "3/8=132", "slip jig": "3/8=112", "reel": "1/2=96", "hornpipe": "1/2=80",
    "polka": "1/4=132", "waltz": "3/4=56", "mazurka": "3/4=52", "march": "1/4=110", "strathspey": "1/4=120",
    "air": "1/4=80", "barndance": "1/2=88", "schottische": "1/4=132",
}
DEFAULT_TEMPO = "1/4=120"
FADE_SECONDS = 0.3


@dataclass(frozen=True)
class PrepareSettings:
    """What ``prepare`` needs: the generated files (system name -> ABC file), the real file, the output."""

    generated: dict[str, Path]
    real: Path
    out: Path
    bars: int = 8
    attention: int = 2
    ratings: bool = True
    max_tunes: int | None = None
    seed: int = 0
    soundfont: str | None = None
    sample_rate: int = 22050


def tempo_for(rhythm: str | None) -> str:
    """The study's ``Q:`` for a rhythm (``R:`` text); :data:`DEFAULT_TEMPO` for an unknown or missing one."""
    return TEMPI.get((rhythm or "").strip().lower(), DEFAULT_TEMPO)


def seconds_per_whole_note(tempo: str) -> float:
    """``"3/8=112"`` -> seconds one whole note lasts (112 dotted quarters a minute)."""
    unit, _, bpm = tempo.partition("=")
    return 60.0 / (float(bpm) * float(Fraction(unit)))


def read_tunes(path: Path, what: str) -> list[str]:
    """The tunes of an ABC file as text; ``ConfigError`` naming the file for a missing, unreadable or empty one."""
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist (or is not a file): give an ABC file of tunes")
    text, reason = read_text(path)
    if text is None:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({reason}): give an ABC text file")
    tunes = [t.text for t in split_tunes(text)]
    if not tunes:
        raise ConfigError(f"{what} {str(path)!r} holds no ABC tune (a tune needs a K: line)")
    return tunes


def clip_abc(text: str, name: str) -> tuple[str, float, str]:
    """A tune made ready to render: normalised, with the study's tempo in ``Q:``. Returns (abc, seconds a
    whole note lasts at that tempo, the tempo)."""
    tune = normalise_tune(text, name=name)
    tempo = tempo_for(tune.get("R"))
    fields = [(k, v) for k, v in tune.fields if k not in ("Q", "K")] + [("Q", tempo), ("K", tune.get("K") or "C")]
    abc = Tune(fields, tune.body, name=tune.name).to_abc()
    return abc, seconds_per_whole_note(tempo), tempo


def clip_seconds(abc: str, bars: int, whole_note_seconds: float) -> tuple[float, int]:
    """Seconds of the tune's first ``bars`` counted bars (and the pickup before them), and how many bars
    that is (fewer for a shorter tune)."""
    report = check_tune(normalise_tune(abc)).report
    with_notes = [b for b in report.bars if b.has_notes]
    counted = counted_bars(report.bars)
    if not counted:
        raise ConfigError("the tune has no complete bar of music to play")
    last = counted[min(bars, len(counted)) - 1]
    duration = sum((b.duration for b in with_notes if b.index <= last.index), Fraction(0))
    return float(duration) * whole_note_seconds, min(bars, len(counted))


def trim_wav(path: Path, seconds: float, fade: float = FADE_SECONDS) -> float:
    """Cut a 16-bit WAV to ``seconds`` (no-op when shorter), fading out its last ``fade`` seconds; returns
    the length written. Written to a sibling and renamed."""
    import numpy as np

    with wave.open(str(path), "rb") as r:
        params = r.getparams()
        frames = r.readframes(params.nframes)
    if params.sampwidth != 2:
        raise ConfigError(f"{path}: expected 16-bit audio from fluidsynth, got {8 * params.sampwidth}-bit")
    audio = np.frombuffer(frames, dtype="<i2").reshape(-1, params.nchannels).astype(np.float32)
    keep = min(len(audio), max(1, round(seconds * params.framerate)))
    audio = audio[:keep]
    ramp = min(keep, round(fade * params.framerate))
    if ramp:
        audio[-ramp:] *= np.linspace(1.0, 0.0, ramp, dtype=np.float32)[:, None]
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(params.nchannels)
        w.setsampwidth(2)
        w.setframerate(params.framerate)
        w.writeframes(np.clip(audio, -32768, 32767).astype("<i2").tobytes())
    tmp.replace(path)
    return keep / params.framerate


def _check(settings: PrepareSettings) -> None:
    if not settings.generated:
        raise ConfigError("no generated tunes given: pass --generated FILE.abc")
    if isinstance(settings.bars, bool) or not isinstance(settings.bars, int) or settings.bars < 1:
        raise ConfigError(f"bars={settings.bars!r}: give a whole number of bars above 0, e.g. 8")
    if settings.attention < 0:
        raise ConfigError(f"attention={settings.attention!r}: give 0 or more attention-check trials")
    if settings.max_tunes is not None and settings.max_tunes < 1:
        raise ConfigError(f"max_tunes={settings.max_tunes!r}: give a whole number above 0, or none for all")
    for name in settings.generated:
        if name == REAL or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"system name {name!r}: use letters, digits, '-' or '_', and not {REAL!r}")


def build_trials(clips: dict[str, dict[str, Any]], attention: int, ratings: bool, seed: int) -> list[dict[str, Any]]:
    """The study's trials from its clips (see the module docstring); trial ids ``t001`` .. in a shuffled order."""
    rng = random.Random(seed)
    by_system: dict[str, list[str]] = {}
    for clip_id, clip in clips.items():
        by_system.setdefault(clip["system"], []).append(clip_id)
    real = sorted(by_system.get(REAL, []))
    trials: list[dict[str, Any]] = []
    for system in sorted(s for s in by_system if s != REAL):
        generated = sorted(by_system[system])
        rng.shuffle(generated)
        reals = real[:]
        rng.shuffle(reals)
        n = min(len(generated), len(reals))
        sides = [i % 2 == 0 for i in range(n)]  # real on side A in half of the pairs
        rng.shuffle(sides)
        for i in range(n):
            a, b = (reals[i], generated[i]) if sides[i] else (generated[i], reals[i])
            trials.append({"type": "ab", "system": system, "a": a, "b": b})
    if ratings:
        trials += [{"type": "rating", "clip": c} for c in sorted(clips)]
    pool = real[:]
    rng.shuffle(pool)
    for i in range(attention):
        clip = pool[i % len(pool)]
        trials.append({"type": "attention", "a": clip, "b": clip})
    rng.shuffle(trials)
    width = max(3, len(str(len(trials))))
    return [{"id": f"t{i:0{width}d}", **t} for i, t in enumerate(trials, start=1)]


def prepare_study(settings: PrepareSettings, *, overwrite: bool = False) -> dict[str, Any]:
    """Render the clips and write the study folder (whole or not at all); return ``study.json``'s content."""
    _check(settings)
    check_output_dir(settings.out, overwrite=overwrite)
    check_render_request(("wav",), settings.soundfont)
    soundfont = find_soundfont(settings.soundfont)
    sources = {**settings.generated, REAL: settings.real}
    tunes: list[tuple[str, Path, int, str]] = []
    for system, path in sources.items():
        texts = read_tunes(Path(path), f"{'real' if system == REAL else 'generated'} ABC file")
        texts = texts[: settings.max_tunes] if settings.max_tunes else texts
        tunes += [(system, Path(path), i, text) for i, text in enumerate(texts, start=1)]
    if settings.attention and not any(t[0] == REAL for t in tunes):
        raise ConfigError("attention checks need real tunes")
    ready = []  # every tune parsed before anything is rendered: a broken tune is an error naming it
    for system, path, index, text in tunes:
        name = f"{path.name} tune {index}"
        try:
            abc, whole, tempo = clip_abc(text, name)
            seconds, bars = clip_seconds(abc, settings.bars, whole)
        except AbcgenError as exc:
            raise ConfigError(f"{name} cannot be used in the study: {exc}") from exc
        ready.append((system, path, index, name, abc, tempo, seconds, bars))
    numbers = list(range(1, len(ready) + 1))
    random.Random(settings.seed).shuffle(numbers)  # clip names in a shuffled order: c001 is not the first tune
    width = max(3, len(str(len(ready))))
    clips: dict[str, dict[str, Any]] = {}
    with atomic_output_dir(settings.out, overwrite=overwrite) as tmp:
        (tmp / CLIPS_DIR).mkdir()
        for number, (system, path, index, name, abc, tempo, seconds, bars) in zip(numbers, ready, strict=True):
            clip_id = f"c{number:0{width}d}"
            wav = render_abc(abc, tmp / CLIPS_DIR / clip_id, ("wav",), soundfont=soundfont,
                             sample_rate=settings.sample_rate, name=name)["wav"]
            length = trim_wav(wav, seconds)
            clips[clip_id] = {"system": system, "source": str(path), "tune": index, "abc": abc, "tempo": tempo,
                              "bars": bars, "seconds": round(length, 3), "file": f"{CLIPS_DIR}/{clip_id}.wav"}
            log.info("clip %s: %s (%s, %d bars, %.1f s)", clip_id, name, system, bars, length)
        clips = dict(sorted(clips.items()))
        study = {
            "version": STUDY_VERSION, "seed": settings.seed, "bars": settings.bars,
            "soundfont": str(soundfont), "sample_rate": settings.sample_rate, "tempi": TEMPI,
            "default_tempo": DEFAULT_TEMPO, "systems": [*settings.generated, REAL],
            "clips": clips, "trials": build_trials(clips, settings.attention, settings.ratings, settings.seed),
        }
        (tmp / STUDY_FILE).write_text(json.dumps(study, indent=1), encoding="utf-8")
    return study


def load_study(folder: str | Path) -> dict[str, Any]:
    """``study.json`` of a study folder; ``ConfigError`` when the folder is not a study."""
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        raise ConfigError(f"{str(folder)!r} is not a study folder (no {STUDY_FILE}): write one with "
                          "'abcgen listen prepare --generated A.abc --real B.abc --out STUDY/'")
    study = json.loads(path.read_text(encoding="utf-8"))
    if study.get("version") != STUDY_VERSION:
        raise ConfigError(f"{path} is study version {study.get('version')!r}; this abcgen reads {STUDY_VERSION}")
    return study


def trial_clips(trial: dict[str, Any]) -> list[str]:
    """The clip ids a trial plays, in page order."""
    return [trial["clip"]] if trial["type"] == "rating" else [trial["a"], trial["b"]]


def duration_summary(study: dict[str, Any]) -> str:
    """One line: clips, trials and the minutes one rater needs (each clip heard once, plus answering)."""
    seconds = sum(study["clips"][c]["seconds"] for t in study["trials"] for c in trial_clips(t))
    minutes = math.ceil((seconds + 10 * len(study["trials"])) / 60)
    return (f"{len(study['clips'])} clips, {len(study['trials'])} trials, about {minutes} minutes a rater")
