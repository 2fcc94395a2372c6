"""The ``abcgen`` command as users run it: real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from abcgen.controls import ControlVocabulary
from abcgen.corpus.build import load_corpus


def _abcgen(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "abcgen", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"abcgen {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.mark.slow
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


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _abcgen("data", "build", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c"), check=False)
    assert result.returncode == 2
    assert "neither a file, a folder nor music21:NAME" in result.stderr and "Traceback" not in result.stderr


# --- issue 11, item 10: a user error is one line and exit 2; a traceback only with -v or for a real bug -----

def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if " ERROR " in line]


@pytest.mark.slow
def test_traceback_of_a_user_error_only_with_verbose(tmp_path: Path) -> None:
    args = ("data", "build", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c"))
    quiet, verbose = _abcgen(*args, check=False), _abcgen("-v", *args, check=False)
    assert quiet.returncode == verbose.returncode == 2
    assert "Traceback" not in quiet.stderr and len(_errors(quiet)) == 1
    assert f"'{tmp_path / 'nowhere'}'" in _errors(quiet)[0]
    assert "Traceback" in verbose.stderr and "ConfigError" in verbose.stderr


_RAISE = """
import sys
import abcgen.corpus.build as build
def fail(config, **kwargs):
    raise {error}
build.build_corpus = fail
from abcgen.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("error", "expected"), [
    ("PermissionError(13, 'Permission denied', str(config.out / 'data-00000.arrow'))", "permission denied"),
    ("FileNotFoundError(2, 'No such file', str(config.out))", "does not exist"),
    ("IsADirectoryError(21, 'Is a directory', str(config.out))", "is a folder where a file was expected"),
])
def test_file_system_errors_on_a_user_path_are_one_line(tmp_path: Path, error: str, expected: str) -> None:
    script = _RAISE.format(error=error)
    out = tmp_path / "corpus"
    result = subprocess.run([sys.executable, "-c", script, "data", "build", "--source", "music21:miscFolk", "--out",
                             str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = _errors(result)
    assert len(errors) == 1 and str(out) in errors[0] and expected in errors[0], result.stderr


def test_file_system_error_elsewhere_is_a_bug_with_its_traceback(tmp_path: Path) -> None:
    script = _RAISE.format(error="FileNotFoundError(2, 'No such file', '/usr/share/abcgen-internal/table.json')")
    result = subprocess.run([sys.executable, "-c", script, "data", "build", "--source", "music21:miscFolk", "--out",
                             str(tmp_path / "corpus")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" in result.stderr and "abcgen-internal" in result.stderr


@pytest.mark.parametrize(("args", "named"), [
    (("check", "NOWHERE/missing.abc"), "'NOWHERE/missing.abc' does not exist"),
    (("check", "TMP"), "is a folder"),
    (("evaluate", "--abc", "x.abc", "--data", "c", "--top-p", "2", "--out", "o"), "'2' must be above 0 and at most 1"),
    (("evaluate", "--abc", "x.abc", "--data", "c", "--seeds", "0", "--out", "o"), "'0' must be above 0"),
    (("data", "build", "--source", "x", "--out", "o", "--validation-fraction", "1.5"), "'1.5' must be at least 0"),
    (("data", "build", "--source", "x", "--out", "o", "--workers", "-2"), "'-2' must be 0 or more"),
    (("tokenizer", "train-base", "--data", "c", "--out", "o", "--vocab-size", "abc"), "'abc' is not a whole number"),
    (("publish", "--model", "m", "--repo-id", "a/b", "--timeout", "-1"), "'-1' must be a finite number above 0"),
])
def test_bad_values_name_the_value_and_exit_2(tmp_path: Path, args: tuple[str, ...], named: str) -> None:
    args = tuple(str(tmp_path) if a == "TMP" else a for a in args)
    result = _abcgen(*args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert named in result.stderr, result.stderr
