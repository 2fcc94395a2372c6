"""``abcgen evaluate`` and ``evaluate_texts``: the report of a real (tiny) model folder against a real corpus,
and the side-by-side rule (the same code on generated and real tunes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import tiny_music_model_folder

from abcgen.corpus.build import BuildConfig, build_corpus, load_corpus
from abcgen.evaluation.report import EvaluationInputs, evaluate_texts
from abcgen.generation.arguments import DEFAULT_GRAMMAR
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
    assert report["decoding"]["grammar"] == DEFAULT_GRAMMAR and report["decoding"]["guidance_scale"] == 1.0
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


# --- the grammar and the guidance an evaluation samples with (issues 13, 14) ------------------------------------

class _SpyPipe:
    """The pipeline's call signature; records every call's keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **kwargs: object) -> list[dict]:
        self.calls.append(kwargs)
        return [{"abc": "X:1\nK:D\nD|]\n", "valid": True}] * int(kwargs["num_return_sequences"])


def test_grammar_and_guidance_reach_every_pipeline_call() -> None:
    from abcgen.evaluation.generate import GenerationSettings, Request, generate_for_requests

    requests = [Request({"key": "D major", "bars": 4}), Request({"key": "G major", "bars": 4}),
                Request({"key": "D major", "bars": 4})]
    spy = _SpyPipe()
    settings = GenerationSettings(grammar="idiom", guidance_scale=2.0)
    results = generate_for_requests(spy, requests, settings, seed=0, progress=False)
    assert len(results) == 3 and len(spy.calls) == 2  # one call per distinct request
    assert all(c["grammar"] == "idiom" and c["guidance_scale"] == 2.0 for c in spy.calls)
    assert settings.as_dict()["grammar"] == "idiom" and settings.as_dict()["guidance_scale"] == 2.0

    default = _SpyPipe()  # None leaves the grammar to the pipeline; the report names the one that applies
    generate_for_requests(default, requests[:1], GenerationSettings(), seed=0, progress=False)
    assert "grammar" not in default.calls[0] and default.calls[0]["guidance_scale"] == 1.0
    assert GenerationSettings().as_dict()["grammar"] == DEFAULT_GRAMMAR


@pytest.mark.parametrize(("grammar", "scale", "needle"), [("folk", 1.0, "grammar='folk'"), (None, -1.0, "-1.0"),
                                                           (None, float("nan"), "nan"), ("", 1.0, "grammar=''")])
def test_bad_grammar_or_guidance_is_one_config_error(grammar: str | None, scale: float, needle: str) -> None:
    from abcgen.errors import ConfigError
    from abcgen.evaluation.generate import GenerationSettings

    with pytest.raises(ConfigError, match=re.escape(needle)) as caught:
        GenerationSettings(grammar=grammar, guidance_scale=scale).check()
    assert "\n" not in str(caught.value)
    GenerationSettings(grammar="idiom", guidance_scale=0.0).check()  # legal edge: 0 ignores the conditions


def test_guided_draws_ask_multi_voice_rows_for_one_voice() -> None:
    from abcgen.controls import ControlVocabulary
    from abcgen.evaluation.generate import draw_requests

    rows = [{"key": "D major", "meter": "6/8", "unit_length": "1/8", "num_bars": 8, "num_voices": 2}]
    vocabulary = ControlVocabulary.from_rows(rows, min_count=1)
    plain = draw_requests(rows, vocabulary, ("key", "meter"), 2, seed=0)
    guided = draw_requests(rows, vocabulary, ("key", "meter"), 2, seed=0, guided=True)
    assert [r.voices for r in plain] == [2, 2] and "voices" not in plain[0].skipped
    assert [r.voices for r in guided] == [1, 1] and "guidance" in guided[0].skipped["voices"]


def test_a_gan_is_refused_a_grammar_or_guidance_not_silently_sampled_without() -> None:
    from abcgen.errors import ConfigError
    from abcgen.evaluation.generate import GenerationSettings
    from abcgen.evaluation.run import _refuse_token_options_for_gan

    _refuse_token_options_for_gan(Path("gan"), GenerationSettings())  # the defaults apply to any generator
    for settings, needle in ((GenerationSettings(grammar="legacy"), "--grammar legacy"),
                             (GenerationSettings(guidance_scale=1.5), "--guidance-scale 1.5")):
        with pytest.raises(ConfigError, match=needle):
            _refuse_token_options_for_gan(Path("gan"), settings)


@pytest.mark.slow
def test_evaluate_with_the_idiom_grammar_and_guidance(corpus: Path, model_dir: Path, tmp_path: Path) -> None:
    """``--grammar idiom --guidance-scale 2`` reach the pipeline: the report records both, its header names
    them, and every generated tune ends on the tonic of the key it was asked for (the idiom grammar's forced
    cadence; the random model alone does not: see the legacy run below)."""
    from abcgen.notation.keys import parse_key
    from abcgen.notation.piece import read_piece

    common = ("--data", str(corpus), "--num-samples", "4", "--seeds", "2", "--max-bars", "8", "--bootstrap",
              "20", "--perplexity-tunes", "0", "--no-abc2midi", "--quiet")
    endings = {}
    for grammar, extra in (("idiom", ("--guidance-scale", "2")), ("legacy", ())):
        out = tmp_path / grammar
        result = _abcgen("evaluate", "--model", str(model_dir), *common, "--grammar", grammar, *extra,
                         "--out", str(out))
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads((out / "report.json").read_text())
        scale = 2.0 if extra else 1.0
        assert report["decoding"]["grammar"] == grammar and report["decoding"]["guidance_scale"] == scale
        header = (out / "report.md").read_text().split("| tier |")[0]
        assert f"Grammar: {grammar} (" in header
        assert ("Guidance: classifier-free, scale 2." if extra else "Guidance: off (scale 1).") in header
        assert len(report["samples"]) == 8  # every tune, each with what it was asked for
        endings[grammar] = []
        for sample in report["samples"]:
            piece = read_piece(sample["abc"])
            asked = parse_key(sample["conditions"]["key"])
            assert piece.key is not None and piece.key.tonic_semitone() == asked.tonic_semitone()
            endings[grammar].append(piece.melody[-1].pitch % 12 == asked.tonic_semitone())
        assert _by_name(report)["ends_on_tonic"]["generated"]["value"] == 100.0 * sum(endings[grammar]) / 8
    assert all(endings["idiom"])
    assert not all(endings["legacy"])  # so the idiom run's tonic endings are the grammar's doing
