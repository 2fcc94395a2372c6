"""The ``abcgen`` command as users run it: real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from abcgen.controls import ControlVocabulary
from abcgen.corpus.build import load_corpus


def _abcgen(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "abcgen", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"abcgen {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def test_data_build_then_tokenizer_build(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    result = _abcgen("data", "build", "--source", "music21:miscFolk", "--out", str(corpus), "--quiet")
    assert "total" in result.stdout and "built in" in result.stdout
    report = json.loads((corpus / "report.json").read_text())
    assert report["tunes"]["in"] == report["tunes"]["accepted"] + report["tunes"]["rejected"] + report["tunes"]["duplicates"]
    assert report["tunes"]["in"] == 185  # miscFolk's two files
    assert len(load_corpus(corpus)["train"]) == report["splits"]["train"]
    ControlVocabulary.load(corpus)

    base = tmp_path / "base"
    _abcgen("tokenizer", "train-base", "--data", str(corpus), "--out", str(base), "--vocab-size", "600")
    result = _abcgen("tokenizer", "build", "--base", str(base), "--data", str(corpus), "--out", str(tmp_path / "tok"),
                     "--units", "shipped")
    assert "round-trip" in result.stdout
    tok_report = json.loads((tmp_path / "tok" / "tokenizer_report.json").read_text())
    assert tok_report["num_round_trip_failures"] == 0


def test_check_exit_codes_and_json(tmp_path: Path) -> None:
    good = tmp_path / "good.abc"
    good.write_text("X:1\nT:Ok\nM:4/4\nL:1/8\nK:D\nABcd efga|bagf edcB|]\n", encoding="utf-8")
    bad = tmp_path / "bad.abc"
    bad.write_text("X:1\nT:Ok\nM:4/4\nL:1/8\nK:D\nABcd efga|bagf edc|d8|]\n\nX:2\nT:No key\nabc|\n\n"
                   "X:3\nT:Cut\nM:4/4\nL:1/8\nK:D\nABcd efga|bagf e", encoding="utf-8")
    assert _abcgen("check", str(good)).stdout.strip().endswith(": ok")
    result = _abcgen("check", "--json", str(bad), check=False)
    assert result.returncode == 1
    entries = json.loads(result.stdout)
    assert "bar 2" in entries[0]["problems"][0] and "no K: field" in entries[1]["problems"][0]
    assert entries[2]["problems"][0].startswith("truncated")  # the same checks as the corpus builder


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _abcgen("data", "build", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c"), check=False)
    assert result.returncode == 2
    assert "neither a file, a folder nor music21:NAME" in result.stderr and "Traceback" not in result.stderr
