"""``abcgen evaluate`` and ``evaluate_texts``: the report of a real (tiny) model folder against a real corpus,
and the side-by-side rule (the same code on generated and real tunes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_music_model_folder

from abcgen.corpus.build import BuildConfig, build_corpus, load_corpus
from abcgen.evaluation.report import EvaluationInputs, evaluate_texts
from abcgen.model_folder import model_fingerprint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "corpus"
    build_corpus(BuildConfig(sources=["music21:airdsAirs"], out=out, workers=1), progress=False)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_music_model_folder(tmp_path_factory.mktemp("eval-model") / "model")


def _abcgen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "abcgen.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, timeout=900)


def _by_name(report: dict) -> dict[str, dict]:
    return {m["name"]: m for m in report["metrics"]}


@pytest.mark.slow
def test_a_set_scored_against_itself_matches_real_exactly(corpus: Path) -> None:
    """Generated = real: every per-piece metric is identical on both sides, and the distributions overlap
    completely (generated-vs-real overlap 1, KL 0, histogram divergences 0)."""
    test = [row["abc"] for row in load_corpus(corpus)["test"]][:40]
    report = evaluate_texts(EvaluationInputs(generated=test, real=test), n_resamples=50, abc2midi=False)
    metrics = _by_name(report)
    for name in ("validity_ours", "bar_alignment_error", "pitch_class_entropy", "pitch_range", "repeat_sign_rate",
                 "self_similarity", "groove_consistency"):
        assert metrics[name]["generated"]["value"] == pytest.approx(metrics[name]["real"]["value"]), name
    # Read twice, the sets are distinct objects: each tune meets its copy at distance 0 across the sets, which
    # the intra-set distances never contain, so the overlap is close to 1 but not exactly 1.
    assert metrics["overlap_mean"]["generated"]["value"] > 0.95
    assert metrics["kl_mean"]["generated"]["value"] < 0.05
    assert metrics["pitch_class_kl"]["generated"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["note_length_js"]["generated"]["value"] == pytest.approx(0.0, abs=1e-9)
    # the real column of set-level rows is the floor: two different halves, so it is below a perfect 1
    assert metrics["overlap_mean"]["real"]["value"] < 1.0


@pytest.mark.slow
def test_broken_generated_tunes_are_counted_not_dropped(corpus: Path) -> None:
    real = [row["abc"] for row in load_corpus(corpus)["test"]][:20]
    generated = real[:10] + ["not abc at all", "X:1\nM:4/4\nL:1/8\nK:C\nCDEF GABc|cdef gabc2 d|cdef gabc|]\n"]
    report = evaluate_texts(EvaluationInputs(generated=generated, real=real), n_resamples=50, abc2midi=True)
    assert report["counts"]["generated"] == 12 and report["counts"]["generated_unreadable"] == 1
    validity = _by_name(report)["strict_validity"]["generated"]
    assert validity["value"] <= 100.0 * 10 / 12 + 1e-9


@pytest.mark.slow
def test_evaluate_command_writes_the_report(corpus: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = _abcgen("evaluate", "--model", str(model_dir), "--data", str(corpus), "--num-samples", "4", "--seeds",
                     "2", "--max-bars", "8", "--bootstrap", "50", "--perplexity-tunes", "10", "--quiet",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1
    assert report["model"]["fingerprint"] == model_fingerprint(model_dir)
    assert report["decoding"]["seeds"] == [0, 1] and report["decoding"]["constrained"] is True
    assert report["counts"]["generated"] == 8 and report["data"]["num_real"] == 8
    metrics = _by_name(report)
    # constrained decoding: every generated tune is valid even from a random model
    assert metrics["validity_ours"]["generated"]["value"] == 100.0
    assert metrics["strict_validity"]["generated"]["value"] == 100.0
    assert metrics["meter_adherence"]["generated"]["value"] == 100.0
    assert metrics["bars_adherence"]["generated"]["value"] == 100.0
    for name in ("strict_validity", "bar_alignment_error", "copy_rate", "key_adherence_ks", "overlap_mean"):
        assert metrics[name]["generated"] is not None and metrics[name]["real"] is not None, name
    assert len(metrics["strict_validity"]["per_seed"]) == 2
    assert report["perplexity"]["tokens"] > 0
    for plot in report["plots"]:
        assert (out / plot).stat().st_size > 1000
    markdown = (out / "report.md").read_text()
    assert "| A1 | strict_validity |" in markdown and "real" in markdown
    assert (out / "generated.abc").read_text().count("X:") == 8

    # the report the command wrote is one publish accepts for this model: the card carries its numbers
    repo = tmp_path / "repo"
    published = _abcgen("publish", "--model", str(model_dir), "--repo-id", "tester/tiny", "--report", str(out),
                        "--local-dir", str(repo))
    assert published.returncode == 0, published.stderr[-3000:]
    card = (repo / "README.md").read_text()
    assert "model-index" in card and "strict_validity" in card
    assert json.loads((repo / "evaluation" / "report.json").read_text())["model"]["fingerprint"] == \
        model_fingerprint(model_dir)


@pytest.mark.slow
def test_evaluate_scores_files_from_any_generator(corpus: Path, tmp_path: Path) -> None:
    tunes = tmp_path / "other_toolkit.abc"
    tunes.write_text("\n".join(row["abc"] for row in load_corpus(corpus)["validation"]), encoding="utf-8")
    out = tmp_path / "files-report"
    result = _abcgen("evaluate", "--abc", str(tunes), "--data", str(corpus), "--bootstrap", "50", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["generated"] == len(load_corpus(corpus)["validation"])
    assert "key_adherence_ks" not in _by_name(report)  # nothing records what was asked


@pytest.mark.slow
def test_evaluate_refuses_bad_input(corpus: Path, model_dir: Path, tmp_path: Path) -> None:
    both = _abcgen("evaluate", "--model", str(model_dir), "--abc", "x.abc", "--data", str(corpus), "--out", str(tmp_path))
    assert both.returncode == 2 and "not both" in both.stderr
    split = _abcgen("evaluate", "--model", str(model_dir), "--data", str(corpus), "--split", "dev", "--out",
                    str(tmp_path))
    assert split.returncode == 2 and "'dev' is not a split" in split.stderr
    tunes = tmp_path / "tunes.abc"
    tunes.write_text(load_corpus(corpus)["validation"][0]["abc"], encoding="utf-8")
    files_split = _abcgen("evaluate", "--abc", str(tunes), "--data", str(corpus), "--split", "dev", "--out",
                          str(tmp_path))
    assert files_split.returncode == 2 and "'dev' is not a split" in files_split.stderr
    empty = tmp_path / "empty-model"
    empty.mkdir()
    missing = _abcgen("evaluate", "--model", str(empty), "--data", str(corpus), "--out", str(tmp_path))
    assert missing.returncode == 2 and "cannot be evaluated" in missing.stderr
