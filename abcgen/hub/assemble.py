"""Step 2 of ``abcgen publish``: assemble the whole repository in a folder -- weights (merged, or peft's
``adapter/``), tokenizer, control vocabulary, training config, decoding defaults, the model card, the
evaluation report and plots, sample audio -- and validate it before anything leaves the machine."""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abcgen.controls import FILENAME as CONTROL_VOCABULARY_FILE
from abcgen.errors import ConfigError
from abcgen.hub.card import render_card
from abcgen.hub.checks import report_plots
from abcgen.hub.layout import (
    CARD_FILE,
    CARD_TEMPLATE,
    DEFAULT_LICENSE,
    EVALUATION_DIR,
    GENERATION_FILE,
    MODEL_CONFIG_FILES,
    SAMPLE_MEDIA_SUFFIXES,
    SAMPLES_DIR,
    TOKENIZER_FILES,
    TRAIN_CONFIG_FILE,
    TRAINING_SUMMARY_FILE,
    _train_config,
)
from abcgen.model_folder import ADAPTER_DIR, IDENTITY_FILE, merged_weight_files
from abcgen.model_idioms import IDIOMS_FILE
from abcgen.model_profiles import PROFILES_FILE


def assemble_repository(
    model_dir: str | Path,
    repo_id: str,
    destination: str | Path,
    *,
    report: dict[str, Any] | None,
    report_dir: str | Path | None,
    adapter_only: bool = False,
    license: str = DEFAULT_LICENSE,  # noqa: A002 -- the card's metadata key
    datasets: Sequence[str] = (),
) -> list[str]:
    """Write the repository's files into the new folder ``destination``; returns their paths, sorted.

    ``report`` is ``load_report``'s result (``None``: published without evaluation)."""
    model_dir, out = Path(model_dir), Path(destination)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise ConfigError(f"the repository folder {str(out)!r} must be new or empty")
    if adapter_only:
        shutil.copytree(model_dir / ADAPTER_DIR, out / ADAPTER_DIR)
    else:
        for path in merged_weight_files(model_dir):
            shutil.copyfile(path, out / path.name)
        _copy_present(model_dir, out, MODEL_CONFIG_FILES)
    # idioms.json (the corpus's idiom shares the idiom grammar follows), theory_profiles.json (what the theory
    # prior weighs notes by) and abcgen_model.json (the tokenizer fingerprint) travel with the model, so a hub
    # id behaves like its source folder.
    _copy_present(model_dir, out, TOKENIZER_FILES + (CONTROL_VOCABULARY_FILE, "generation_config.json",
                                                      TRAIN_CONFIG_FILE, TRAINING_SUMMARY_FILE,
                                                      IDIOMS_FILE, PROFILES_FILE, IDENTITY_FILE))
    media: list[str] = []
    if report is not None and report_dir is not None:
        report_dir = Path(report_dir)
        (out / EVALUATION_DIR).mkdir()
        _copy_present(report_dir, out / EVALUATION_DIR, ("report.json", "report.md", *report_plots(report, report_dir)))
        # Regular files only: a link in the report folder must not pull a file from elsewhere into the repository.
        for path in sorted(p for p in report_dir.rglob("*") if p.suffix.lower() in SAMPLE_MEDIA_SUFFIXES
                           and p.is_file() and not p.is_symlink()):
            (out / SAMPLES_DIR).mkdir(exist_ok=True)
            shutil.copyfile(path, out / SAMPLES_DIR / path.name)
            media.append(f"{SAMPLES_DIR}/{path.name}")
    generation = generation_settings(model_dir, adapter_only=adapter_only)
    (out / GENERATION_FILE).write_text(json.dumps(generation, indent=1, ensure_ascii=False), encoding="utf-8")
    files = _repository_files(out) + [CARD_FILE]
    card = render_card(model_dir, repo_id, report=report, adapter_only=adapter_only, license=license,
                       datasets=datasets, generation=generation, media=media, files=sorted(files))
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    return _repository_files(out)



def generation_settings(model_dir: str | Path, *, adapter_only: bool = False) -> dict[str, Any]:
    """``abcgen_generation.json``: the pipeline's decoding defaults (constrained decoding on), the conditions
    the model was trained with, the music vocabulary the constraint works over, and what an adapter needs
    to be loaded (the embedding rows its base must be resized to)."""
    from transformers import AutoTokenizer

    from abcgen.generation.pipeline import STRUCTURAL, TASK, AbcGenerationPipeline, trained_conditions
    from abcgen.grammar import music_vocabulary  # here, not at the top: abcgen.hub imports without torch

    defaults = inspect.signature(AbcGenerationPipeline._sanitize_parameters).parameters
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    train = _train_config(model_dir)
    return {
        "schema_version": 1,
        "task": TASK,
        "decoding": {name: defaults[name].default
                     for name in ("constrained", "temperature", "top_p", "max_new_tokens")},
        "max_new_tokens_note": "null: the pipeline budgets enough tokens for the requested bars",
        "trained_conditions": list(trained_conditions(model_dir)),
        "structural_conditions": list(STRUCTURAL),
        "music_vocabulary": music_vocabulary(tokenizer).describe(),
        "embedding_rows": config.get("vocab_size"),
        "method": train.get("model", {}).get("method"),
        "base_model": train.get("model", {}).get("name_or_path") or None,
        "adapter_only": adapter_only,
    }



def validate_repository(folder: str | Path, *, adapter_only: bool, secrets: Sequence[str | None] = ()) -> None:
    """Refuse an assembled repository that lacks a piece, whose card metadata does not parse, or that
    contains a secret (the token) in any file."""
    from huggingface_hub import ModelCard

    folder = Path(folder)
    required = [CARD_FILE, CONTROL_VOCABULARY_FILE, GENERATION_FILE, "tokenizer_config.json"]
    required += [f"{ADAPTER_DIR}/adapter_config.json"] if adapter_only else ["config.json"]
    missing = [name for name in required if not (folder / name).is_file()]
    if not adapter_only and not merged_weight_files(folder):
        missing.append("*.safetensors")
    if missing:
        raise ConfigError(f"the assembled repository lacks {', '.join(missing)}; nothing was published")
    card = ModelCard((folder / CARD_FILE).read_text(encoding="utf-8"))
    if not card.data.get("pipeline_tag"):
        raise ConfigError(f"the rendered model card has no metadata: check {CARD_TEMPLATE} starts with the "
                          "'---' metadata block; nothing was published")
    for secret in filter(None, secrets):
        for path in folder.rglob("*"):
            if path.is_file() and _file_contains(path, secret.encode()):
                raise ConfigError(f"the assembled repository file {path.relative_to(folder)} contains the Hugging "
                                  "Face token; remove it from the model folder or report; nothing was published")



def _copy_present(source: Path, target: Path, names: Sequence[str]) -> None:
    for name in names:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)



def _repository_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())



def _file_contains(path: Path, needle: bytes) -> bool:
    """Streamed search, with an overlap so a needle split across two reads is still found."""
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle):]
    return False
