"""The files of a model the pipeline reads besides weights and tokenizer -- from a local folder or a hub
repository: the control vocabulary, the trained conditions (``abcgen_train_config.yaml``) and the idioms
of the training corpus (``idioms.json``, for ``grammar="idiom"``) and its theory profiles
(``theory_profiles.json``, for ``theory_prior`` and ``rhythm_prior``)."""

from __future__ import annotations

import logging
from pathlib import Path

from abcgen.controls import FILENAME as CONTROL_VOCABULARY_FILE
from abcgen.controls import ControlVocabulary, condition_names
from abcgen.errors import ConfigError
from abcgen.grammar.melody import check_interval_profile, check_length_profile
from abcgen.model_idioms import IDIOMS_FILE, read_model_idioms
from abcgen.model_profiles import PROFILES_FILE, read_model_profiles

log = logging.getLogger(__name__)


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
        return condition_names()
    import yaml

    data = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data", {})
    return tuple(data.get("conditions") or condition_names())


def load_control_vocabulary(name_or_path: str | Path) -> ControlVocabulary:
    """The vocabulary saved with a model: a local folder, or a hub repository (cached or downloadable)."""
    path = _model_file(name_or_path, CONTROL_VOCABULARY_FILE)
    if path is None:
        raise ConfigError(f"model {str(name_or_path)!r} has no {CONTROL_VOCABULARY_FILE}: it was not trained by "
                          "train/finetune.py (or was copied or published without it); conditions cannot be checked")
    return ControlVocabulary.load(path)


def corpus_idioms(name_or_path: str | Path) -> dict[str, float] | None:
    """The idiom shares of the model's training corpus (``idioms.json``), or None when the model has none
    (an older folder, a hub model published without it): the caller then allows every idiom."""
    path = _model_file(name_or_path, IDIOMS_FILE)
    if path is None:
        log.info("model %s has no %s: every idiom the tokenizer has is allowed", name_or_path, IDIOMS_FILE)
        return None
    return read_model_idioms(path)


def corpus_profiles(name_or_path: str | Path) -> dict[str, dict] | None:
    """The theory profiles of the model's training corpus (``theory_profiles.json``: ``modes``, ``rhythms``, ``intervals``,
    ``rhythm_lengths``, each entry checked by the grammar),
    or None when the model has none (then the theory prior is refused with the command that writes it)."""
    path = _model_file(name_or_path, PROFILES_FILE)
    if path is None:
        return None
    profiles = read_model_profiles(path)
    for section, check in (("intervals", check_interval_profile), ("rhythm_lengths", check_length_profile)):
        for label, entry in profiles[section].items():
            try:
                check(entry)
            except ConfigError as error:
                raise ConfigError(f"theory profiles file {str(path)!r}, {section} of {label!r}: {error}") from None
    return profiles


__all__ = ["corpus_idioms", "corpus_profiles", "load_control_vocabulary", "trained_conditions"]
