"""``abcgen publish``: the model folder's identity, the assembled repository and its card, the push through
the real ``huggingface_hub`` client to a loopback test double of the Hub (tests/hub_server.py), the
download back into a fresh cache, token redaction, and every kind of bad input."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import wave
import zlib
from pathlib import Path

import pytest
from hub_server import HubTestServer
from tiny_models import tiny_music_model_folder

from abcgen.errors import ConfigError
from abcgen.hub import PublishError, publish
from abcgen.model_folder import check_model_folder, model_fingerprint

TOKEN = "hf_TestOnlyToken_5c1e9a7d"  # the loopback server's valid token; must never leak
REPO_ID = "tester/tiny-jigs"
REQUEST = {"key": "D", "meter": "6/8", "rhythm": "jig", "bars": 16, "num_return_sequences": 3, "seed": 7}


# --- fixtures: a model folder as train/finetune.py writes one, its report, the Hub double --------------------

def _png(path: Path) -> None:
    """A real 2x2 grey PNG (signature, IHDR, IDAT, IEND), without a plotting library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    pixels = zlib.compress(b"\x00\x80\x80" * 2)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def _wav(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x10" * 800)


def _finish_model_folder(folder: Path, corpus: Path, *, method: str, base: str = "") -> Path:
    """What save_final adds besides weights and tokenizer: training config and summary, theory profiles."""
    from abcgen.model_profiles import write_model_profiles

    write_model_profiles(folder, {"major": {"profile": [0.3, 0, 0.1, 0, 0.2, 0.05, 0, 0.2, 0, 0.1, 0, 0.05],
                                            "tunes": 40}}, corpus=str(corpus))
    (folder / "abcgen_train_config.yaml").write_text(
        f"schema_version: 1\nmodel:\n  name_or_path: '{base}'\n  method: {method}\n"
        f"data:\n  corpus: {corpus}\n  conditions: [rhythm, key, meter]\n", encoding="utf-8")
    (folder / "training_summary.json").write_text(json.dumps({
        "data": {"train": {"tunes": 80, "examples": 84, "tokens": 12345, "rows": 50},
                 "validation": {"tunes": 8, "examples": 8, "tokens": 1200, "rows": 5}},
        "steps": 30, "tokens_seen": 40000, "parameters": {"total": 123456, "trainable": 123456},
        "first_loss": 7.1, "final_loss": 3.25, "eval": {"eval_loss": 3.0, "eval_perplexity": 20.1}}), encoding="utf-8")
    return folder


def _write_report(report_dir: Path, model_dir: Path, fingerprint: str | None = None) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    _png(report_dir / "pitch_classes.png")
    (report_dir / "report.md").write_text("# Evaluation\n", encoding="utf-8")
    (report_dir / "samples").mkdir(exist_ok=True)
    _wav(report_dir / "samples" / "tune_00.wav")
    metric = {"tier": "A1", "unit": "%", "higher_is_better": True, "floor": None}
    (report_dir / "report.json").write_text(json.dumps({
        "schema_version": 1,
        "model": {"path": str(model_dir), "fingerprint": fingerprint or model_fingerprint(model_dir)},
        "data": {"corpus": "corpus-finetune", "split": "test", "num_real": 30},
        "decoding": {"constrained": True, "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 400,
                     "seeds": [0, 1, 2], "samples_per_seed": 10},
        "metrics": [
            {**metric, "name": "strict_validity", "description": "tunes that pass every check",
             "generated": {"value": 97.5, "low": 94.0, "high": 99.0},
             "real": {"value": 93.0, "low": 88.0, "high": 96.0}},
            {**metric, "name": "copy_rate", "tier": "C", "higher_is_better": False,
             "description": "generated tunes that copy a training tune",
             "generated": {"value": 3.25, "low": 1.0, "high": 6.0}, "real": {"value": 0.0, "low": 0.0, "high": 2.0}},
        ],
        "perplexity": {"loss": 3.0, "perplexity": 20.086, "tokens": 4000, "tunes": 12},
        "samples": [{"abc": "X:1\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|d2f e2d:|\n", "conditions": {"rhythm": "jig"},
                     "valid": True}],
        "plots": ["pitch_classes.png"]}), encoding="utf-8")
    return report_dir


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the part of a corpus folder publish reads: report.json's sources."""
    corpus = tmp_path_factory.mktemp("corpus")
    (corpus / "report.json").write_text(json.dumps({"config": {"sources": ["music21:oneills1850"]}}), encoding="utf-8")
    return corpus


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    folder = tiny_music_model_folder(tmp_path_factory.mktemp("publish") / "model")
    shutil.rmtree(folder / "_base")  # the tokenizer's build folder, not part of a saved model
    return _finish_model_folder(folder, corpus_dir, method="scratch")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    return _write_report(tmp_path_factory.mktemp("eval") / "report", model_dir)


@pytest.fixture(scope="module")
def hub():  # noqa: ANN201
    with HubTestServer(valid_token=TOKEN) as server:
        yield server


def _client_env(hub_endpoint: str, hf_home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """The environment of a subprocess that talks to the double: set before huggingface_hub is imported,
    which reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import (huggingface_hub.constants)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_ENDPOINT=hub_endpoint, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1", HF_HOME=str(hf_home),
               HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def _abcgen(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "abcgen", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def published(hub: HubTestServer, model_dir: Path, report_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """`abcgen -v publish` as a user runs it (debug logging on, so the logs are as verbose as they get)."""
    home = tmp_path_factory.mktemp("publisher-hf-home")
    return _abcgen("-v", "publish", "--model", str(model_dir), "--repo-id", REPO_ID, "--report", str(report_dir),
                   env=_client_env(hub.endpoint, home))


# --- the model folder: pieces and identity ------------------------------------------------------------------

def test_fingerprint_follows_weights_and_tokenizer_not_location(model_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    assert model_fingerprint(copy) == model_fingerprint(model_dir)  # a moved model is the same model
    (copy / "training_summary.json").write_text("{}", encoding="utf-8")
    assert model_fingerprint(copy) == model_fingerprint(model_dir)  # not a weight, config or tokenizer file
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(weights))
    assert model_fingerprint(copy) != model_fingerprint(model_dir)
    with pytest.raises(ConfigError, match="no weight files"):
        model_fingerprint(tmp_path)


def test_missing_pieces_are_named_with_the_fix(model_dir: Path, tmp_path: Path) -> None:
    assert check_model_folder(model_dir) == []
    broken = shutil.copytree(model_dir, tmp_path / "broken")
    (broken / "tokenizer.json").unlink()
    (broken / "control_vocabulary.json").unlink()
    problems = check_model_folder(broken)
    assert len(problems) == 2
    assert "tokenizer" in problems[0] and "save_pretrained" in problems[0]
    assert "control_vocabulary.json" in problems[1] and "abcgen data build" in problems[1]
    assert "adapter" in check_model_folder(model_dir, adapter=True)[0]


# --- the pushed repository ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_publish_pushes_everything_in_one_commit(published: subprocess.CompletedProcess[str],
                                                 hub: HubTestServer) -> None:
    assert published.returncode == 0, published.stderr[-3000:]
    assert f"published to {REPO_ID} in one commit" in published.stdout
    assert not hub.unhandled  # the client asked for nothing the double does not implement
    commits = hub.commits(REPO_ID)
    assert [c.summary for c in commits][0] == "initial commit" and len(commits) == 2  # exactly one commit added
    files = set(hub.files(REPO_ID))
    assert {"README.md", "config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "control_vocabulary.json", "abcgen_generation.json", "abcgen_train_config.yaml",
            "training_summary.json", "theory_profiles.json", "evaluation/report.json", "evaluation/report.md",
            "evaluation/pitch_classes.png", "samples/tune_00.wav"} <= files
    stored = hub.repos[REPO_ID].commits[-1].files
    assert stored["model.safetensors"].lfs and stored["evaluation/pitch_classes.png"].lfs  # via the LFS batch API
    assert not stored["README.md"].lfs
    generation = json.loads(hub.files(REPO_ID)["abcgen_generation.json"])
    assert generation["decoding"]["constrained"] is True
    assert generation["trained_conditions"] == ["rhythm", "key", "meter"]
    assert generation["music_vocabulary"]["notes"] > 0


@pytest.mark.slow
def test_token_appears_in_no_output_log_or_file(published: subprocess.CompletedProcess[str],
                                                hub: HubTestServer) -> None:
    assert published.returncode == 0
    assert "DEBUG" in published.stderr  # the logs were as verbose as they get
    assert TOKEN not in published.stdout and TOKEN not in published.stderr
    for path, content in hub.files(REPO_ID).items():
        assert TOKEN.encode() not in content, path


@pytest.mark.slow
def test_download_reproduces_the_source_tunes(published: subprocess.CompletedProcess[str], hub: HubTestServer,
                                              model_dir: Path, tmp_path: Path) -> None:
    """Fresh cache, no token: snapshot_download the repository, load it by hub id with the pipeline, run the
    card's own usage snippet, and compare with the source folder at the same seed."""
    assert published.returncode == 0
    script = r"""
import json, re, sys
from pathlib import Path
import abcgen
from huggingface_hub import snapshot_download
from transformers import pipeline
repo_id, source, request = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
folder = Path(snapshot_download(repo_id))
hashes = {p.relative_to(folder).as_posix(): __import__("hashlib").sha256(p.read_bytes()).hexdigest()
          for p in folder.rglob("*") if p.is_file()}
from_source, from_hub = pipeline("abc-generation", model=source), pipeline("abc-generation", model=repo_id)
snippet = re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(encoding="utf-8"), re.S).group(1)
namespace = {}
exec(snippet, namespace)
print("RESULT " + json.dumps({"hashes": hashes, "source": [t["abc"] for t in from_source(**request)],
                              "hub": [t["abc"] for t in from_hub(**request)],
                              "conditions": [from_source.trained_conditions, from_hub.trained_conditions],
                              "snippet_valid": [t["valid"] for t in namespace["tunes"]]}))
"""
    env = _client_env(hub.endpoint, tmp_path / "fresh-hf-home", token=None)
    run = subprocess.run([sys.executable, "-c", script, REPO_ID, str(model_dir), json.dumps(REQUEST)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert result["hashes"] == {p: hashlib.sha256(c).hexdigest() for p, c in hub.files(REPO_ID).items()}
    assert result["conditions"][0] == result["conditions"][1] == ["rhythm", "key", "meter"]
    assert len(result["source"]) == 3 and result["hub"] == result["source"]
    assert result["snippet_valid"] == [True, True]


@pytest.mark.slow
def test_card_states_metadata_counts_evaluation_and_copy_rate(published: subprocess.CompletedProcess[str],
                                                              hub: HubTestServer) -> None:
    from huggingface_hub import ModelCard

    assert published.returncode == 0
    card = ModelCard(hub.files(REPO_ID)["README.md"].decode())
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert data["license"] == "apache-2.0" and data["datasets"] == ["music21:oneills1850"]
    assert {"music", "symbolic-music", "abc-notation"} <= set(data["tags"])
    assert "base_model" not in data  # trained from scratch: no base
    metrics = data["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [("strict_validity", 97.5), ("copy_rate", 3.25)]
    text = card.text
    assert 'pipeline("abc-generation", model="tester/tiny-jigs")' in text and "import abcgen" in text
    assert "30 tunes (constrained decoding" in text and "Perplexity on 12 held-out tunes: 20.086" in text
    assert "3.25 % [1.0, 6.0] of generated tunes copy a training tune" in text
    assert "| strict_validity | A1 | 97.5 % [94.0, 99.0] | 93.0 % [88.0, 96.0] |" in text
    assert "|:dAF DFA|d2f e2d:|" in text and "samples/tune_00.wav" in text
    assert "80 tunes, 84 examples, 12,345 tokens" in text and "123,456 parameters" in text
    assert "| rhythm | control token | jig (20)" in text


# --- the local folder ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_local_dir_writes_the_same_repository_and_replaces_only_its_own(
        published: subprocess.CompletedProcess[str], hub: HubTestServer, model_dir: Path, report_dir: Path,
        tmp_path: Path) -> None:
    out = tmp_path / "repo"
    result = publish(model_dir, REPO_ID, report_dir=report_dir, local_dir=out)
    pushed = hub.files(REPO_ID)
    assert result.commit_url is None and set(result.files) == set(pushed) - {".gitattributes"}
    for name in result.files:
        assert (out / name).read_bytes() == pushed[name], name
    before = _tree_bytes(out)
    with pytest.raises(ConfigError, match=r"already holds files: pass --overwrite"):
        publish(model_dir, REPO_ID, no_eval=True, local_dir=out)  # refused without overwrite: nothing changes
    assert _tree_bytes(out) == before
    # Folders beside it that publish did not make (their names only start like its own) are never removed.
    for name in (".repo.previous", ".repo.previous-mine", ".repo.tmp-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text("mine", encoding="utf-8")
    publish(model_dir, REPO_ID, no_eval=True, local_dir=out, overwrite=True)  # an earlier published folder is replaced
    assert "**Not evaluated.**" in (out / "README.md").read_text(encoding="utf-8")
    assert not (out / "evaluation").exists()
    assert sorted(p.name for p in tmp_path.glob(".*")) == [".repo.previous", ".repo.previous-mine", ".repo.tmp-x"]
    assert all((tmp_path / name / "keep.txt").is_file() for name in (".repo.previous", ".repo.previous-mine"))
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    for overwrite in (False, True):  # a folder publish did not write is not replaced, even with overwrite
        with pytest.raises(ConfigError, match="was not written by abcgen publish"):
            publish(model_dir, REPO_ID, no_eval=True, local_dir=foreign, overwrite=overwrite)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("plot", [
    "../model.safetensors",  # would replace the published weights after the fingerprint check
    "../../escape.png",
    "ABSOLUTE",  # an absolute path to a PNG outside the report folder
    "sub/pitch_classes.png",
    "..",
    "report.json",  # not a plot kind: would replace the copied report
    "pitch_classes.py",
    "link.png",  # a link out of the report folder
    7,
])
def test_crafted_report_plots_are_refused(model_dir: Path, tmp_path: Path, plot: object) -> None:
    report = _write_report(tmp_path / "report", model_dir)
    (tmp_path / "report" / "sub").mkdir()
    _png(tmp_path / "report" / "sub" / "pitch_classes.png")
    _png(tmp_path / "outside.png")
    (tmp_path / "model.safetensors").write_bytes(b"not the model")  # what "../model.safetensors" would publish
    (tmp_path / "report" / "link.png").symlink_to(tmp_path / "outside.png")
    plot = str(tmp_path / "outside.png") if plot == "ABSOLUTE" else plot
    payload = json.loads((report / "report.json").read_text(encoding="utf-8"))
    payload["plots"] = ["pitch_classes.png", plot]
    (report / "report.json").write_text(json.dumps(payload), encoding="utf-8")
    out = tmp_path / "published"
    with pytest.raises(ConfigError, match="plot") as error:
        publish(model_dir, REPO_ID, report_dir=report, local_dir=out)
    assert repr(plot) in str(error.value)
    assert not out.exists() and not (tmp_path / "escape.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "outside.png", "report"]


def test_crafted_report_through_the_cli_is_one_line(model_dir: Path, tmp_path: Path) -> None:
    report = _write_report(tmp_path / "report", model_dir)
    payload = json.loads((report / "report.json").read_text(encoding="utf-8"))
    payload["plots"] = ["../model.safetensors"]
    (report / "report.json").write_text(json.dumps(payload), encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"not the model")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = _abcgen("publish", "--model", str(model_dir), "--repo-id", REPO_ID, "--report", str(report),
                   "--local-dir", str(tmp_path / "out"), env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "'../model.safetensors'" in errors[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_file_holding_the_token_is_refused(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leaky = shutil.copytree(model_dir, tmp_path / "leaky")
    (leaky / "training_summary.json").write_text(json.dumps({"env": {"HF_TOKEN": TOKEN}}), encoding="utf-8")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="training_summary.json contains the Hugging Face token") as error:
        publish(leaky, REPO_ID, no_eval=True, local_dir=tmp_path / "out")
    assert TOKEN not in str(error.value) and not (tmp_path / "out").exists()


# --- bad input: each a clear error, nothing written or pushed -----------------------------------------------

@pytest.mark.parametrize(("remove", "message"), [
    (("tokenizer.json", "tokenizer_config.json"), "no tokenizer"),
    (("control_vocabulary.json",), "control_vocabulary.json .* is missing"),
])
def test_model_folder_missing_pieces(model_dir: Path, tmp_path: Path, remove: tuple[str, ...], message: str) -> None:
    broken = shutil.copytree(model_dir, tmp_path / "broken")
    for name in remove:
        (broken / name).unlink()
    with pytest.raises(ConfigError, match=message):
        publish(broken, REPO_ID, no_eval=True, local_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_report_from_another_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    other = _write_report(tmp_path / "other", model_dir, fingerprint="0" * 32)
    with pytest.raises(ConfigError, match="written for another model"):
        publish(model_dir, REPO_ID, report_dir=other, local_dir=tmp_path / "out")
    of_files = json.loads((other / "report.json").read_text(encoding="utf-8"))
    of_files["model"] = {"path": None, "files": ["tunes.abc"]}  # `abcgen evaluate --abc`: no model behind it
    (other / "report.json").write_text(json.dumps(of_files), encoding="utf-8")
    with pytest.raises(ConfigError, match="names no model fingerprint"):
        publish(model_dir, REPO_ID, report_dir=other, local_dir=tmp_path / "out")
    with pytest.raises(ConfigError, match="without an evaluation report.*--no-eval"):
        publish(model_dir, REPO_ID, local_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("repo_id", ["tiny-jigs", "tester/tiny/jigs", "tester/tiny jigs", "tester/a--b", "/jigs", ""])
def test_repo_id_must_be_owner_slash_name(model_dir: Path, tmp_path: Path, repo_id: str) -> None:
    with pytest.raises(ConfigError, match="is not OWNER/NAME"):
        publish(model_dir, repo_id, no_eval=True, local_dir=tmp_path / "out")


def test_adapter_only_needs_an_adapter(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no LoRA adapter .* \(drop --adapter-only\)"):
        publish(model_dir, REPO_ID, adapter_only=True, no_eval=True, local_dir=tmp_path / "out")


def test_push_without_a_token_says_how_to_give_one(model_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ConfigError, match="no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        publish(model_dir, REPO_ID, no_eval=True)


def test_rejected_token_is_a_clear_error_without_the_token(hub: HubTestServer, model_dir: Path,
                                                           tmp_path: Path) -> None:
    wrong = "hf_WrongToken_0b6e11f2"
    run = _abcgen("-v", "publish", "--model", str(model_dir), "--repo-id", "tester/rejected", "--no-eval",
                  env=_client_env(hub.endpoint, tmp_path / "home", token=wrong))
    assert run.returncode == 2
    assert "rejected the token (401" in run.stderr and "nothing was created or committed" in run.stderr
    assert wrong not in run.stdout + run.stderr
    assert "tester/rejected" not in hub.repos


def test_unreachable_endpoint_fails_fast_and_says_so(model_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    run = _abcgen("publish", "--model", str(model_dir), "--repo-id", "tester/nowhere", "--no-eval", "--timeout", "5",
                  env=_client_env(f"http://127.0.0.1:{closed}", tmp_path / "home"), timeout=120)
    assert run.returncode == 2
    assert "cannot reach the Hub" in run.stderr and "nothing was created or committed" in run.stderr
    assert TOKEN not in run.stdout + run.stderr


@pytest.fixture
def online(hub: HubTestServer, monkeypatch: pytest.MonkeyPatch) -> HubTestServer:
    """This process's huggingface_hub pointed at the double (its constants were read at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub


def test_failed_commit_after_creating_the_repo_says_so(online: HubTestServer, model_dir: Path) -> None:
    online.fail_commits_with = 500
    try:
        with pytest.raises(PublishError, match="was created but nothing was committed") as error:
            publish(model_dir, "tester/half", private=True, no_eval=True)
    finally:
        online.fail_commits_with = None
    assert TOKEN not in str(error.value) and "committing the files" in str(error.value)
    repo = online.repos["tester/half"]
    assert repo.private and [c.summary for c in repo.commits] == ["initial commit"]
    result = publish(model_dir, "tester/half", private=True, no_eval=True)  # re-running publishes into it
    assert not result.created_repo and len(online.commits("tester/half")) == 2


@pytest.mark.slow
def test_private_flag_refuses_an_existing_public_repo(online: HubTestServer,
                                                      published: subprocess.CompletedProcess[str],
                                                      model_dir: Path) -> None:
    assert published.returncode == 0
    with pytest.raises(PublishError, match="already exists .* and is public"):
        publish(model_dir, REPO_ID, private=True, no_eval=True)
    assert len(online.commits(REPO_ID)) == 2


# --- adapter only -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lora_model_dir(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> tuple[Path, Path]:
    """A LoRA run's final/: merged weights + adapter/ (random, non-zero LoRA and new-token rows)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("lora")
    base = tiny_music_model_folder(root / "base", seed=1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    new_rows = tokenizer.convert_tokens_to_ids(["<rhythm=jig>", "<key=D_major>", "<meter=6/8>"])
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
        trainable_token_indices={"embed_tokens": new_rows}, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "trainable_tokens" in name:
                parameter.normal_(0.0, 1.0)
    final = root / "final"
    model.save_pretrained(final / "adapter")
    model.merge_and_unload().save_pretrained(final)
    tokenizer.save_pretrained(final)
    shutil.copy(base / "control_vocabulary.json", final)
    return _finish_model_folder(final, corpus_dir, method="lora", base=str(base)), base


@pytest.mark.slow
def test_adapter_only_repository_loads_on_its_base_like_the_merged_model(lora_model_dir: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    from transformers import pipeline

    final, base = lora_model_dir
    out = tmp_path / "adapter-repo"
    result = publish(final, "tester/tiny-lora", adapter_only=True, no_eval=True, local_dir=out)
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "tokenizer.json",
            "control_vocabulary.json", "abcgen_train_config.yaml", "abcgen_generation.json"} <= set(result.files)
    assert "model.safetensors" not in result.files and "config.json" not in result.files
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "lora" in card and "PeftModel.from_pretrained" in card
    # The card's snippet, run as written, with the repo id replaced by the folder (the base is a local path).
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace("tester/tiny-lora", str(out))
    namespace: dict = {}
    exec(snippet, namespace)
    assert str(base) in snippet
    request = {**REQUEST, "num_return_sequences": 2}
    merged = pipeline("abc-generation", model=str(final))
    assert [t["abc"] for t in namespace["pipe"](**request)] == [t["abc"] for t in merged(**request)]
