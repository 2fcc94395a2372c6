"""``theory_profiles.json`` of a model folder: what the theory prior weighs notes by, from the training corpus.

Training writes it beside the weights (``abcgen.training.outputs.write_run_files``) from the train split:
``modes``, the pitch-class profile of each mode (``abcgen.grammar.tonality.mode_profiles``), and
``rhythms``, the written note lengths of each rhythm label (``rhythm_profiles``). The pipeline's
``theory_prior`` reads the requested mode's profile, ``rhythm_prior`` the requested rhythm's lengths. Folders written
before it have none: ``abcgen data profiles --model FOLDER --data CORPUS`` writes it.
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
                         rhythms: dict[str, dict[str, Any]] | None = None, *, corpus: str | None = None) -> Path:
    """Write ``folder/theory_profiles.json`` (``mode_profiles`` and ``rhythm_profiles`` of the training tunes);
    returns its path."""
    return write_versioned(Path(folder) / PROFILES_FILE, KIND, VERSION,
                           {"modes": modes, "rhythms": rhythms or {}, "corpus": corpus},
                           sort_keys=True)


def read_model_profiles(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{"modes": ..., "rhythms": ...}`` of a ``theory_profiles.json`` (a ``ConfigError`` line for a broken
    file)."""
    fix = "re-run training, or write it with `abcgen data profiles --model FOLDER --data CORPUS`"
    data = read_versioned(path, KIND, VERSION, fix=fix)
    modes, rhythms = data.get("modes"), data.get("rhythms", {})
    modes_ok = isinstance(modes, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("tunes"), int)
        and isinstance(entry.get("profile"), list) and len(entry["profile"]) == 12
        and all(isinstance(v, int | float) for v in entry["profile"]) for entry in modes.values())
    rhythms_ok = isinstance(rhythms, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("tunes"), int) and isinstance(entry.get("lengths"), dict)
        and all(isinstance(v, int | float) for v in entry["lengths"].values()) for entry in rhythms.values())
    if not modes_ok:
        raise ConfigError(f"theory profiles file {str(path)!r} has no 'modes' object of 12-value profiles: {fix}")
    if not rhythms_ok:
        raise ConfigError(f"theory profiles file {str(path)!r} has a 'rhythms' entry without 'lengths' shares: {fix}")
    return {"modes": modes, "rhythms": rhythms}


__all__ = ["PROFILES_FILE", "read_model_profiles", "write_model_profiles"]
