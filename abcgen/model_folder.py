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
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from abcgen.controls import FILENAME as CONTROL_VOCABULARY_FILE
from abcgen.errors import ConfigError

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
