"""What a published repository holds: its file names, the card template, the limits of the card, and what
``publish`` returns or raises. Shared by the steps of ``abcgen.hub`` (check, assemble, card, push)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abcgen.errors import AbcgenError

CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "assets" / "hub_cards" / "model_card.md"  # package data
CARD_FILE = "README.md"
GENERATION_FILE = "abcgen_generation.json"  # decoding and constraint defaults, music vocabulary description
TRAIN_CONFIG_FILE = "abcgen_train_config.yaml"  # the pipeline reads the trained conditions from it
TRAINING_SUMMARY_FILE = "training_summary.json"
EVALUATION_DIR = "evaluation"  # report.json, report.md and the plots, in the repository
SAMPLES_DIR = "samples"  # rendered sample audio / MIDI, in the repository
REPORT_SCHEMA_VERSION = 1

# Tokenizer files any Hugging Face tokenizer may save; the ones present are copied.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")
MODEL_CONFIG_FILES = ("config.json", "model.safetensors.index.json")
SAMPLE_MEDIA_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".mid")
PLOT_SUFFIXES = (".png", ".svg")  # the kinds of file report.json["plots"] may name
CARD_TAGS = ("music", "symbolic-music", "abc-notation", "abcgen")
DEFAULT_LICENSE = "apache-2.0"
DEFAULT_TIMEOUT_S = 60.0
NUM_CARD_SAMPLES = 4
NUM_CARD_VALUES = 24  # condition values listed per condition in the card
REDACTED = "<redacted token>"
SMALL_MODEL_PARAMETERS = 100_000_000  # below this the card says the model is a demonstration

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"


class PublishError(AbcgenError):
    """Talking to the Hub failed (unreachable, token rejected, commit refused); the message says at which
    step and what state the repository was left in."""


@dataclass(frozen=True)
class PublishResult:
    """What ``publish`` did. ``files`` are the repository's paths; ``local_dir`` is set for a local write,
    ``commit_url`` for a push (``created_repo`` says whether the repository was new)."""

    repo_id: str
    files: list[str]
    local_dir: Path | None = None
    commit_url: str | None = None
    created_repo: bool = False


def _json_or_empty(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}



def _train_config(model_dir: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(model_dir) / TRAIN_CONFIG_FILE
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}



def _looks_like_hub_id(name: str) -> bool:
    """A hub id (``owner/name``), not a local folder such as the quickstart's ``runs/quickstart/base/final``:
    only hub ids belong in the card's ``base_model`` metadata."""
    return bool(re.fullmatch(f"{_REPO_PART}/{_REPO_PART}", name)) and not Path(name).exists()
