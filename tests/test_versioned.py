"""The one reader/writer of abcgen's versioned JSON files, and the readers that go through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abcgen.controls import ControlVocabulary
from abcgen.errors import ConfigError
from abcgen.hub.checks import load_report
from abcgen.model_folder import IDENTITY_FILE, read_model_identity
from abcgen.tokenization.units import UnitSpec, load_default_spec
from abcgen.training.checkpoint import MARKER, read_trainer_state
from abcgen.versioned import read_versioned, write_versioned


def one_line_error(call, *needles: str) -> str:  # noqa: ANN001
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_round_trip_writes_version_and_kind_atomically(tmp_path: Path) -> None:
    path = write_versioned(tmp_path / "thing.json", "thing", 2, {"a": [1, 2], "b": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"schema_version": 2, "kind": "thing", "a": [1, 2], "b": "é"}
    assert read_versioned(path, "thing", (1, 2))["a"] == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["thing.json"]  # no temporary sibling left
    # A write that fails (not JSON-serialisable) leaves the previous file as it was, and no leftover.
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_versioned(path, "thing", 2, {"a": object()})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["thing.json"]
    with pytest.raises(ValueError, match="schema_version"):
        write_versioned(path, "thing", 2, {"schema_version": 3})


def test_every_bad_file_is_one_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    fix = "rebuild it with `abcgen x`"
    one_line_error(lambda: read_versioned(path, "thing", 1, fix=fix), "thing file", str(path), "does not exist", fix)
    path.write_text('{"schema_version": 1,\n "a": }', encoding="utf-8")
    one_line_error(lambda: read_versioned(path, "thing", 1, fix=fix), "is not valid JSON (line 2, column", fix)
    path.write_text("[1, 2]", encoding="utf-8")
    one_line_error(lambda: read_versioned(path, "thing", 1, fix=fix), "JSON list, not an object", fix)
    write_versioned(path, "unit spec", 1, {})
    one_line_error(lambda: read_versioned(path, "thing", 1, fix=fix), "is a unit spec file, not a thing file")
    write_versioned(path, "thing", 3, {})
    one_line_error(lambda: read_versioned(path, "thing", (1, 2), fix=fix), "schema_version 3, newer than this "
                   "abcgen reads (1, 2)", "upgrade abcgen")
    write_versioned(path, "thing", 0, {})
    one_line_error(lambda: read_versioned(path, "thing", 1, fix=fix), "schema_version 0; this abcgen reads 1", fix)
    path.write_text('{"a": 1}', encoding="utf-8")
    one_line_error(lambda: read_versioned(path, "thing", 1, fix=fix), "has no schema_version", fix)
    assert read_versioned(path, "thing", 1, unversioned=1) == {"a": 1}  # written before it had a version


def test_control_vocabulary_and_unit_spec_use_it(tmp_path: Path) -> None:
    vocabulary = ControlVocabulary(values={"rhythm": {"reel": 7}}, combinations={"D|4/4|reel": 7}, min_count=5)
    path = vocabulary.save(tmp_path)
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == "control vocabulary"
    assert ControlVocabulary.load(tmp_path) == vocabulary
    payload = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**payload, "schema_version": 2}), encoding="utf-8")
    one_line_error(lambda: ControlVocabulary.load(tmp_path), str(path), "newer than this abcgen", "upgrade abcgen")

    shipped = load_default_spec()  # the shipped file (written before it had a kind) still reads
    spec_path = shipped.save(tmp_path / "units.json")
    assert UnitSpec.load(spec_path).texts() == shipped.texts()
    spec_path.write_text(spec_path.read_text(encoding="utf-8")[:50], encoding="utf-8")
    one_line_error(lambda: UnitSpec.load(spec_path), "unit spec file", "not valid JSON",
                   "python -m abcgen.tokenization.units")


def test_trainer_state_model_identity_and_report_use_it(tmp_path: Path) -> None:
    checkpoint = tmp_path / "step-3"
    checkpoint.mkdir()
    (checkpoint / MARKER).write_text(json.dumps({"schema_version": 1, "step": 3, "extra_state": {"epoch": 1}}))
    assert read_trainer_state(checkpoint)["epoch"] == 1
    (checkpoint / MARKER).write_text('{"schema_version": 1, "step"')
    one_line_error(lambda: read_trainer_state(checkpoint), "trainer state file", "not valid JSON", "'latest'")

    model = tmp_path / "model"
    model.mkdir()
    (model / IDENTITY_FILE).write_text(json.dumps({"tokenizer_fingerprint": "ab", "tokenizer_size": 9}))
    assert read_model_identity(model)["tokenizer_fingerprint"] == "ab"  # an older file, no schema_version
    (model / IDENTITY_FILE).write_text(json.dumps({"schema_version": 5}))
    one_line_error(lambda: read_model_identity(model), "model identity file", "schema_version 5", "upgrade abcgen")

    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text("[]")
    one_line_error(lambda: load_report(report, model), "evaluation report file", "not an object",
                   f"abcgen evaluate --model {model}")
