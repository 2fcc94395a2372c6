"""``theory_profiles.json`` of a model folder: what the theory prior weighs notes by, from the training corpus.

Training writes it beside the weights (``abcgen.training.outputs.write_run_files``) from the train split:
``modes``, the pitch-class profile of each mode (``abcgen.grammar.tonality.mode_profiles``), and
``rhythms``, the written note lengths of each rhythm label (``rhythm_profiles``), and ``intervals``, the
melodic steps of each rhythm label and of every tune (``abcgen.grammar.melody.interval_profiles``). The
pipeline's ``theory_prior`` reads the requested mode's profile, ``rhythm_prior`` the requested rhythm's lengths,
``interval_prior`` its steps; ``rhythm_lengths``, each rhythm's written lengths after the length before and its
broken-rhythm signs (``length_profiles``), are what ``rhythm_prior`` weighs by; ``openings``, the pitch-class
profile of each mode's openings (``mode_profiles(texts, opening=True)``), what ``opening_prior`` weighs the first
bar by. Folders written before it have none (and folders written before ``intervals``
existed have no ``intervals``, ``rhythm_lengths`` or ``openings``): ``abcgen data profiles --model FOLDER --data CORPUS [--overwrite]`` writes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abcgen.errors import ConfigError
from abcgen.versioned import read_versioned, write_versioned

PROFILES_FILE = "theory_profiles.json"
KIND = "theory profiles"
VERSION = 1


def write_model_profiles(folder: str | Path, modes: dict[str, dict[str, Any]],
                         rhythms: dict[str, dict[str, Any]] | None = None,
                         intervals: dict[str, dict[str, Any]] | None = None,
                         rhythm_lengths: dict[str, dict[str, Any]] | None = None, *,
                         openings: dict[str, dict[str, Any]] | None = None, corpus: str | None = None) -> Path:
    """Write ``folder/theory_profiles.json`` (``abcgen.grammar.melody.measure_profiles`` of the training tunes:
    ``write_model_profiles(folder, **measure_profiles(...), corpus=...)``); returns its path."""
    return write_versioned(Path(folder) / PROFILES_FILE, KIND, VERSION,
                           {"modes": modes, "rhythms": rhythms or {}, "intervals": intervals or {},
                            "rhythm_lengths": rhythm_lengths or {}, "openings": openings or {}, "corpus": corpus},
                           sort_keys=True)


def read_model_profiles(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{"modes", "rhythms", "intervals", "rhythm_lengths", "openings"}`` of a ``theory_profiles.json`` (a
    ``ConfigError`` line for a broken file; ``intervals``, ``rhythm_lengths`` and ``openings`` are empty in a file
    written before they existed). Their entries' shapes are the grammar's to check (``corpus_profiles`` does, a layer up)."""
    fix = "re-run training, or write it with `abcgen data profiles --model FOLDER --data CORPUS`"
    data = read_versioned(path, KIND, VERSION, fix=fix)
    modes, rhythms, openings = data.get("modes"), data.get("rhythms", {}), data.get("openings", {})

    def pitch_profiles_ok(section: Any) -> bool:
        return isinstance(section, dict) and all(
            isinstance(entry, dict) and isinstance(entry.get("tunes"), int)
            and isinstance(entry.get("profile"), list) and len(entry["profile"]) == 12
            and all(isinstance(v, int | float) for v in entry["profile"]) for entry in section.values())

    modes_ok = pitch_profiles_ok(modes)
    rhythms_ok = isinstance(rhythms, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("tunes"), int) and isinstance(entry.get("lengths"), dict)
        and all(isinstance(v, int | float) for v in entry["lengths"].values()) for entry in rhythms.values())
    if not modes_ok:
        raise ConfigError(f"theory profiles file {str(path)!r} has no 'modes' object of 12-value profiles: {fix}")
    if not pitch_profiles_ok(openings):
        raise ConfigError(f"theory profiles file {str(path)!r} has an 'openings' entry that is not a 12-value "
                          f"profile: {fix}")
    if not rhythms_ok:
        raise ConfigError(f"theory profiles file {str(path)!r} has a 'rhythms' entry without 'lengths' shares: {fix}")
    intervals = data.get("intervals", {})
    if not isinstance(intervals, dict) or not all(isinstance(e, dict) and isinstance(e.get("tunes"), int)
                                                  for e in intervals.values()):
        raise ConfigError(f"theory profiles file {str(path)!r} has an 'intervals' entry without 'tunes': {fix}")
    lengths = data.get("rhythm_lengths", {})
    if not isinstance(lengths, dict) or not all(isinstance(e, dict) and isinstance(e.get("tunes"), int)
                                                for e in lengths.values()):
        raise ConfigError(f"theory profiles file {str(path)!r} has a 'rhythm_lengths' entry without 'tunes': {fix}")
    return {"modes": modes, "rhythms": rhythms, "intervals": intervals, "rhythm_lengths": lengths,
            "openings": openings}


__all__ = ["PROFILES_FILE", "read_model_profiles", "write_model_profiles"]
