"""What a saved model folder must hold, and its identity.

A model folder is what ``train/finetune.py`` writes to ``OUTPUT_DIR/final/`` (``save_final``): merged
weights (``model.safetensors``, or shards), ``config.json``, the tokenizer (``tokenizer.json`` +
``tokenizer_config.json``), ``control_vocabulary.json``, ``generation_config.json``,
``abcgen_train_config.yaml``, ``training_summary.json`` and, for LoRA runs, ``adapter/`` (peft's files).

``check_model_folder`` lists the pieces that are missing, each with how to get it, so that ``abcgen
publish`` and ``abcgen evaluate`` refuse a broken folder before doing any work.

``model_fingerprint`` is the folder's identity: the evaluation report stores it
(``report["model"]["fingerprint"]``) and publishing compares it with the folder being published, so a
report written for another model (or for the same folder before it was retrained) is refused.

``tokenizer_fingerprint`` is a tokenizer's identity (its vocabulary and special tokens); training stores it
in ``abcgen_model.json`` beside the weights, and ``check_tokenizer_matches`` (called by the
``abc-generation`` pipeline and at the start of fine-tuning) refuses a tokenizer that is not the model's:
one with more tokens than the embedding matrix has rows, or another fingerprint than the stored one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from abcgen.controls import FILENAME as CONTROL_VOCABULARY_FILE
from abcgen.errors import ConfigError
from abcgen.versioned import read_versioned, write_versioned

ADAPTER_DIR = "adapter"
# peft writes one of these two; safetensors since peft 0.4, the .bin only when asked for.
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
ADAPTER_CONFIG_FILE = "adapter_config.json"
# Files besides the weights that change what the model generates: its architecture and its tokenizer.
FINGERPRINTED_FILES = ("config.json", "tokenizer.json")

_CHUNK_BYTES = 1 << 20  # files are hashed 1 MiB at a time, so multi-GB weights never sit in memory


def merged_weight_files(folder: str | Path) -> list[Path]:
    """The merged model's weight files (``*.safetensors`` directly in the folder), sorted by name."""
    return sorted(Path(folder).glob("*.safetensors"))


def adapter_weight_files(folder: str | Path) -> list[Path]:
    """The LoRA adapter's weight files under ``adapter/`` (empty when the folder has no adapter)."""
    adapter = Path(folder) / ADAPTER_DIR
    return [adapter / name for name in ADAPTER_WEIGHT_FILES if (adapter / name).is_file()]


def has_tokenizer(folder: str | Path) -> bool:
    """A fast tokenizer (``tokenizer.json``) or a SentencePiece one (``tokenizer.model``), with its config."""
    folder = Path(folder)
    return (folder / "tokenizer_config.json").is_file() and (
        (folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file())


def check_model_folder(path: str | Path, *, adapter: bool = False) -> list[str]:
    """The pieces a model folder lacks, one message each naming the file and how to get it; ``[]`` when
    complete. ``adapter=True`` also requires the LoRA adapter (``adapter/``), for adapter-only publishing."""
    folder = Path(path)
    if not folder.is_dir():
        return [f"{str(folder)!r} is not a folder: pass the model folder train/finetune.py wrote "
                "(OUTPUT_DIR/final)"]
    missing = []
    if not (folder / "config.json").is_file():
        missing.append(f"config.json (the model's architecture) is missing from {folder}: save the model with "
                       "model.save_pretrained(FOLDER) or re-run train/finetune.py, which writes OUTPUT_DIR/final")
    if not merged_weight_files(folder):
        missing.append(f"no model weights (*.safetensors) in {folder}: save them with "
                       "model.save_pretrained(FOLDER, safe_serialization=True) or re-run train/finetune.py")
    if not has_tokenizer(folder):
        missing.append(f"no tokenizer (tokenizer.json or tokenizer.model, with tokenizer_config.json) in {folder}: "
                       "save it with tokenizer.save_pretrained(FOLDER) (abcgen tokenizer build writes one)")
    if not (folder / CONTROL_VOCABULARY_FILE).is_file():
        missing.append(f"{CONTROL_VOCABULARY_FILE} (the condition values the model was trained with) is missing "
                       f"from {folder}: copy it from the training corpus folder (abcgen data build writes it)")
    has_adapter = (folder / ADAPTER_DIR / ADAPTER_CONFIG_FILE).is_file() and bool(adapter_weight_files(folder))
    if adapter and not has_adapter:
        missing.append(f"no LoRA adapter ({ADAPTER_DIR}/{ADAPTER_CONFIG_FILE} and "
                       f"{ADAPTER_DIR}/{ADAPTER_WEIGHT_FILES[0]}) in {folder}: only models trained with "
                       "model.method=lora have one; publish the merged weights instead (drop --adapter-only)")
    return missing


def model_fingerprint(path: str | Path) -> str:
    """A blake2b digest (32 hex characters) over the weight files (``*.safetensors`` and the adapter's
    weights), ``config.json`` and ``tokenizer.json``, in sorted order of their paths in the folder.

    Each file contributes its relative path, its size and its bytes, so renaming or truncating a file
    changes the fingerprint too. Raises ``ConfigError`` when the folder has no weight file at all, since
    a fingerprint of nothing would match every other empty folder.
    """
    folder = Path(path)
    weights = merged_weight_files(folder) + adapter_weight_files(folder)
    if not weights:
        raise ConfigError(f"cannot fingerprint {str(folder)!r}: it holds no weight files (*.safetensors or "
                          f"{ADAPTER_DIR}/{ADAPTER_WEIGHT_FILES[0]}); pass the model folder train/finetune.py wrote")
    files = weights + [folder / name for name in FINGERPRINTED_FILES if (folder / name).is_file()]
    digest = hashlib.blake2b(digest_size=16)
    for file in sorted(files, key=lambda f: f.relative_to(folder).as_posix()):
        relative = file.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


# --- the tokenizer that belongs to the model --------------------------------------------------------------

IDENTITY_VERSION = 1
IDENTITY_FILE = "abcgen_model.json"  # written by training beside the weights: the tokenizer's fingerprint
# The same fingerprint in the model's own config (config.json), so a loaded model object carries it; training
# sets it whenever a model is built or grown for a tokenizer.
CONFIG_KEY = "abcgen_tokenizer_fingerprint"
# What the model writes, in its config.json: "abc" (also when absent: every model before REMI) or "remi".
REPRESENTATION_KEY = "abcgen_representation"


def model_representation(model_or_folder: Any) -> str:
    """``"abc"`` or ``"remi"``: what a model (object or folder) was trained to write (``REPRESENTATION_KEY``)."""
    if isinstance(model_or_folder, str | Path):
        config = Path(model_or_folder) / "config.json"
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get(REPRESENTATION_KEY) if config.is_file() else None
        except (OSError, ValueError):
            value = None
    else:
        value = getattr(getattr(model_or_folder, "config", None), REPRESENTATION_KEY, None)
    return str(value or "abc")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A blake2b digest (32 hex characters) of what decides the ids a tokenizer gives: its vocabulary
    (token -> id, added tokens included) and its special tokens. Two tokenizers with the same fingerprint
    map every text to the same ids the model was trained on."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
    # the four special tokens generation relies on (the other entries of special_tokens_map do not always
    # survive a save/load round trip unchanged)
    specials = [str(getattr(tokenizer, name, None)) for name in ("bos_token", "eos_token", "pad_token", "unk_token")]
    payload = json.dumps({"vocab": vocab, "specials": specials}, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()


def write_model_identity(folder: str | Path, tokenizer: Any, **extra: Any) -> Path:
    """Store the tokenizer's fingerprint and size in ``folder/abcgen_model.json`` (with ``extra`` keys, e.g.
    the run's fingerprint), so that loading the model with another tokenizer is caught."""
    path = Path(folder) / IDENTITY_FILE
    data = {"tokenizer_fingerprint": tokenizer_fingerprint(tokenizer), "tokenizer_size": len(tokenizer), **extra}
    return write_versioned(path, "model identity", IDENTITY_VERSION, data, sort_keys=True)


def read_model_identity(folder: str | Path) -> dict[str, Any]:
    """``folder/abcgen_model.json`` (``{}`` when the folder has none: older folders, hub models)."""
    path = Path(folder) / IDENTITY_FILE
    if not path.is_file():
        return {}
    # files written before it had a schema_version are version 1
    return read_versioned(path, "model identity", IDENTITY_VERSION, unversioned=1,
                          fix="re-run train/finetune.py, or delete the file to skip the tokenizer check")


def _embedding_rows(model_or_folder: Any) -> tuple[int | None, str]:
    """(rows of the input embedding matrix or None when unknown, a name for messages)."""
    if isinstance(model_or_folder, str | Path):
        folder = Path(model_or_folder)
        config = folder / "config.json"
        if not config.is_file():
            return None, str(folder)
        try:
            size = json.loads(config.read_text(encoding="utf-8")).get("vocab_size")
        except (OSError, ValueError):
            return None, str(folder)
        return (int(size) if isinstance(size, int) else None), str(folder)
    name = str(getattr(model_or_folder, "name_or_path", "") or type(model_or_folder).__name__)
    embeddings = model_or_folder.get_input_embeddings() if hasattr(model_or_folder, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    if rows is None:
        rows = getattr(getattr(model_or_folder, "config", None), "vocab_size", None)
    return (int(rows) if isinstance(rows, int) else None), name


def check_tokenizer_matches(model_or_folder: Any, tokenizer: Any, *, fingerprint: bool = True) -> None:
    """Raise ``ConfigError`` when ``tokenizer`` does not belong to the model (a model object or a model
    folder): it has more tokens than the model's embedding matrix has rows (ids past the end would be an
    ``IndexError`` deep inside the forward pass), or the model folder stored another tokenizer's
    fingerprint (``abcgen_model.json`` of a folder, ``config.abcgen_tokenizer_fingerprint`` of a model object,
    both written by training: the ids would mean other tokens). ``fingerprint=False`` checks the size only."""
    rows, name = _embedding_rows(model_or_folder)
    tokenizer_name = str(getattr(tokenizer, "name_or_path", "") or "the tokenizer")
    if rows is not None and len(tokenizer) > rows:
        raise ConfigError(f"tokenizer {tokenizer_name!r} has {len(tokenizer)} tokens but model {name!r} has only "
                          f"{rows} embedding rows: it is not the model's tokenizer; load the tokenizer saved with "
                          "the model (its folder), or fine-tune the model on this tokenizer")
    if isinstance(model_or_folder, str | Path):
        folder = Path(model_or_folder)
        stored = read_model_identity(folder).get("tokenizer_fingerprint") if folder.is_dir() else None
    else:  # a model object: what its own config says (the folder it came from may hold another model by now)
        stored = getattr(getattr(model_or_folder, "config", None), CONFIG_KEY, None)
    stored = stored if fingerprint else None
    if stored and stored != tokenizer_fingerprint(tokenizer):
        raise ConfigError(f"tokenizer {tokenizer_name!r} (fingerprint {tokenizer_fingerprint(tokenizer)}) is not the "
                          f"one model {name!r} was trained with (fingerprint {stored}, {IDENTITY_FILE}): load the "
                          "tokenizer saved with the model (its folder)")


# --- weight files that can be read ------------------------------------------------------------------------


def safetensors_problem(path: str | Path) -> str | None:
    """Why the safetensors file at ``path`` cannot be loaded (truncated, bad header), or ``None`` when its
    header is valid and the file is as long as the header says. Reads only the header."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated ({size} bytes)"
            length = int.from_bytes(head, "little")
            if length <= 0 or 8 + length > size:
                return f"{path.name} is truncated (header of {length} bytes, file of {size})"
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"{path.name} cannot be read ({exc.__class__.__name__}: {exc})"
    if not isinstance(header, dict):
        return f"{path.name} has no valid header"
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    expected = 8 + length + (max(ends) if ends else 0)
    if size < expected:
        return f"{path.name} is truncated ({size} of {expected} bytes)"
    return None
