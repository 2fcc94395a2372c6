"""The control vocabulary: counting, folding rare values, tokens, prefix, versioned file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abcgen.controls import OTHER, ControlVocabulary, bars_bucket, control_token
from abcgen.errors import ConfigError


def _rows() -> list[dict[str, object]]:
    common = {"key": "D major", "meter": "6/8", "unit_length": "1/8", "rhythm": "jig", "num_bars": 16}
    return [dict(common) for _ in range(6)] + [{**common, "rhythm": "slide", "key": "G major", "num_bars": 40}]


def test_counts_fold_rare_values_and_make_tokens() -> None:
    vocab = ControlVocabulary.from_rows(_rows(), min_count=5)
    assert vocab.values["rhythm"] == {"jig": 6, OTHER: 1}
    assert vocab.values["bars"] == {"16": 6, OTHER: 1}
    assert control_token("key", "D major") == "<key=D_major>"
    assert "<rhythm=jig>" in vocab.tokens() and "<rhythm=other>" in vocab.tokens()
    assert vocab.combinations["D major|6/8|jig"] == 6
    assert vocab.prefix({"key": "D major", "rhythm": "slide", "meter": "6/8"}) == "<key=D_major><meter=6/8><rhythm=other>\n"


def test_unknown_condition_names_the_valid_ones() -> None:
    vocab = ControlVocabulary.from_rows(_rows())
    with pytest.raises(ConfigError, match="unknown condition 'mood'.*rhythm"):
        vocab.normalise("mood", "happy")


def test_save_load_and_schema_version(tmp_path: Path) -> None:
    vocab = ControlVocabulary.from_rows(_rows(), min_count=1)
    path = vocab.save(tmp_path)
    assert ControlVocabulary.load(tmp_path) == vocab
    payload = json.loads(path.read_text())
    payload["schema_version"] = 99
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="schema_version 99"):
        ControlVocabulary.load(path)


def test_bar_buckets() -> None:
    assert [bars_bucket(n) for n in (4, 8, 9, 32, 33, 100)] == ["8", "8", "16", "32", "48", "more"]
