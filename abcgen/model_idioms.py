"""``idioms.json`` of a model folder: which folk idioms the model's training corpus uses.

Training writes it beside the weights (``abcgen.training.outputs.write_run_files``): per idiom of the
grammar (``abcgen.grammar.IDIOMS``), the share of the training tunes that use it
(``idioms_in_corpus``). The pipeline's ``grammar="idiom"`` reads it and allows the idioms used by at
least ``MIN_IDIOM_SHARE`` of them, so constrained decoding offers what the model was trained on. Folders
written before it (and hub models published without it) have none: the pipeline then allows every idiom
the tokenizer has tokens for.
"""

from __future__ import annotations

import logging
from pathlib import Path

from abcgen.errors import ConfigError
from abcgen.versioned import read_versioned, write_versioned

log = logging.getLogger(__name__)

IDIOMS_FILE = "idioms.json"
KIND = "corpus idioms"
VERSION = 1


def write_model_idioms(folder: str | Path, shares: dict[str, float], *, tunes: int,
                       corpus: str | None = None) -> Path:
    """Write ``folder/idioms.json``: the share of the training tunes using each idiom (as measured by
    ``abcgen.grammar.idioms.idioms_in_corpus`` over ``tunes`` tunes); returns its path."""
    return write_versioned(Path(folder) / IDIOMS_FILE, KIND, VERSION,
                           {"shares": dict(shares), "tunes": int(tunes), "corpus": corpus}, sort_keys=True)


def read_model_idioms(path: str | Path) -> dict[str, float]:
    """The idiom shares of an ``idioms.json`` (a ``ConfigError`` line for a broken file)."""
    fix = "re-run training, or delete the file to allow every idiom the tokenizer has"
    data = read_versioned(path, KIND, VERSION, fix=fix)
    shares = data.get("shares")
    if not isinstance(shares, dict) or not all(isinstance(v, int | float) for v in shares.values()):
        raise ConfigError(f"corpus idioms file {str(path)!r} has no 'shares' object of numbers: {fix}")
    return {str(name): float(share) for name, share in shares.items()}


__all__ = ["IDIOMS_FILE", "read_model_idioms", "write_model_idioms"]
