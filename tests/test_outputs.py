"""Outputs written whole or not at all (issue 11, items 7 and 10): every command that writes a folder --
``data build``, ``tokenizer train-base``, ``tokenizer build``, ``evaluate`` (and ``publish --local-dir``, in
test_publish.py) -- refuses a used folder without ``--overwrite``, checks the output before the work starts,
and leaves the previous output byte-identical after a refused or failed run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from abcgen import atomic
from abcgen.corpus.build import BuildConfig, build_corpus, load_corpus
from abcgen.corpus.sources import music21_corpus_dir
from abcgen.errors import ConfigError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
REAL_FILE = "oneills1850/0001-0050.abc"  # 50 real tunes
OTHER_FILE = "oneills1850/0051-0100.abc"


def _abcgen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "abcgen", *args], capture_output=True, text=True, env=ENV,
                          timeout=600)


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: two equal trees are byte-identical outputs."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two folders of real tunes (two O'Neill's files): builds from each give different corpora."""
    root = tmp_path_factory.mktemp("sources")
    folders = []
    for name, relative in (("a", REAL_FILE), ("b", OTHER_FILE)):
        (root / name).mkdir()
        shutil.copyfile(music21_corpus_dir() / relative, root / name / Path(relative).name)
        folders.append(root / name)
    return folders[0], folders[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, sources: tuple[Path, Path]) -> Path:
    out = tmp_path_factory.mktemp("built") / "corpus"
    build_corpus(BuildConfig(sources=[str(sources[0])], out=out, workers=1), progress=False)
    return out


# --- data build ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_data_build_refuses_a_used_out_and_replaces_it_only_with_overwrite(
        corpus: Path, sources: tuple[Path, Path], tmp_path: Path) -> None:
    out = shutil.copytree(corpus, tmp_path / "corpus")
    before = _tree(out)
    refused = _abcgen("data", "build", "--source", str(sources[1]), "--out", str(out), "--quiet")
    line = _one_error_line(refused)
    assert repr(str(out)) in line and "--overwrite" in line
    assert "tunes to process" not in refused.stderr  # refused before any tune was read
    assert _tree(out) == before and _siblings(out) == []
    replaced = _abcgen("data", "build", "--source", str(sources[1]), "--out", str(out), "--quiet", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert _tree(out) != before and _siblings(out) == []
    files = {Path(f).name for split in load_corpus(out).values() for f in split["file"]}
    assert files == {Path(OTHER_FILE).name}  # wholly the new corpus: nothing of the old one is left


def test_data_build_failing_midway_leaves_the_previous_corpus(
        corpus: Path, sources: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from abcgen.controls import ControlVocabulary

    out = shutil.copytree(corpus, tmp_path / "corpus")
    before = _tree(out)

    def full_disk(self: ControlVocabulary, folder: str | Path) -> Path:  # after the dataset is saved
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ControlVocabulary, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        build_corpus(BuildConfig(sources=[str(sources[1])], out=out, workers=1), progress=False, overwrite=True)
    assert _tree(out) == before and _siblings(out) == []  # not half new, half old; no temporary folder left
    assert len(load_corpus(out)["train"]) > 0


@pytest.mark.slow
def test_data_build_checks_the_output_path_before_building(sources: tuple[Path, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    result = _abcgen("data", "build", "--source", str(sources[0]), "--out", str(blocker / "corpus"), "--quiet")
    line = _one_error_line(result)
    assert repr(str(blocker / "corpus")) in line and "not a writable folder" in line
    assert "tunes to process" not in result.stderr and blocker.read_text(encoding="utf-8") == "not a folder"


@pytest.mark.slow
def test_an_output_that_is_or_holds_an_input_is_refused_even_with_overwrite(
        sources: tuple[Path, Path], tmp_path: Path) -> None:
    tunes = shutil.copytree(sources[0], tmp_path / "tunes")
    before = _tree(tunes)
    for out in (tunes, tmp_path):  # the source folder itself, and a folder holding it
        with pytest.raises(ConfigError, match=r"is or holds the input --source .*would delete that input"):
            build_corpus(BuildConfig(sources=[str(tunes)], out=out, workers=1), progress=False, overwrite=True)
    assert _tree(tunes) == before


@pytest.mark.slow  # a real `abcgen data build` process, as the other tests here; in-process: test_bad_inputs
def test_empty_source_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _abcgen("data", "build", "--source", str(tmp_path / "empty"), "--out", str(tmp_path / "c"))
    line = _one_error_line(result)
    assert f"'{tmp_path / 'empty'}' holds no tune files" in line and not (tmp_path / "c").exists()


# --- tokenizers ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_tokenizer_commands_refuse_a_used_out_and_keep_it_after_a_failure(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from abcgen.tokenization import build as tokenizer_build
    from abcgen.tokenization.base_bpe import train_base_from_corpus

    base = tmp_path / "base"
    assert _abcgen("tokenizer", "train-base", "--data", str(corpus), "--out", str(base), "--vocab-size",
                   "600").returncode == 0
    base_before = _tree(base)
    refused = _abcgen("tokenizer", "train-base", "--data", str(corpus), "--out", str(base), "--vocab-size", "700")
    assert "--overwrite" in _one_error_line(refused) and _tree(base) == base_before
    with pytest.raises(ConfigError, match="--vocab-size 10 is smaller"):
        train_base_from_corpus(corpus, base, vocab_size=10, overwrite=True)
    assert _tree(base) == base_before

    tok = tmp_path / "tok"
    tokenizer_build.tokenizer_build_command(str(base), corpus, tok, units_spec="shipped")
    tok_before = _tree(tok)
    with pytest.raises(ConfigError, match=r"already holds files: pass --overwrite"):
        tokenizer_build.tokenizer_build_command(str(base), corpus, tok, units_spec="shipped")

    def broken_report(*args: object, **kwargs: object) -> dict:  # the tokenizer files are already written
        raise RuntimeError("killed while checking")

    monkeypatch.setattr(tokenizer_build, "compare_tokenizers", broken_report)
    with pytest.raises(RuntimeError, match="killed while checking"):
        tokenizer_build.tokenizer_build_command(str(base), corpus, tok, units_spec=None, overwrite=True)
    assert _tree(tok) == tok_before and _siblings(tok) == ["base"]


# --- evaluate -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_evaluate_refuses_a_used_out_and_keeps_it_after_a_failure(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from abcgen.evaluation import run
    from abcgen.evaluation.run import EvaluationSettings, evaluate_abc_files

    tunes = tmp_path / "tunes.abc"
    tunes.write_text("\n".join(load_corpus(corpus)["train"]["abc"][:6]), encoding="utf-8")
    out = tmp_path / "report"
    settings = EvaluationSettings(split="train", n_resamples=20, abc2midi=False)
    evaluate_abc_files([tunes], corpus, out, settings)
    before = _tree(out)
    assert {"report.json", "report.md"} <= set(before)
    refused = _abcgen("evaluate", "--abc", str(tunes), "--data", str(corpus), "--split", "train", "--out", str(out))
    line = _one_error_line(refused)
    assert repr(str(out)) in line and "--overwrite" in line and _tree(out) == before

    def killed(report: dict, folder: str | Path) -> Path:  # the plots are already written
        raise RuntimeError("killed while writing the report")

    monkeypatch.setattr(run, "write_report", killed)
    with pytest.raises(RuntimeError, match="killed while writing"):
        evaluate_abc_files([tunes], corpus, out, settings, overwrite=True)
    assert _tree(out) == before and _siblings(out) == ["tunes.abc"]


# --- the helper every command writes through ----------------------------------------------------------------

def test_leftovers_removed_are_only_those_of_dead_writers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old", encoding="utf-8")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live_pid = os.getppid()  # pytest's parent: alive for the whole test
    names = [f".out.tmp-{dead_pid}", f".out.previous-{dead_pid}", f".out.tmp-{live_pid}", ".out.previous",
             ".out.previous-mine", ".out.tmp-12x"]
    for name in names:
        (tmp_path / name).mkdir()
    with atomic.atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new", encoding="utf-8")
    assert _tree(out) == {"new.txt": b"new"}
    assert _siblings(out) == sorted([f".out.tmp-{live_pid}", ".out.previous", ".out.previous-mine", ".out.tmp-12x"])
