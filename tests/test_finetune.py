"""train/finetune.py as users run it: real subprocesses on tiny models built here, offline, on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from abcgen.corpus.build import BuildConfig, build_corpus
from abcgen.tokenization.base_bpe import train_base_from_corpus
from abcgen.tokenization.build import tokenizer_build_command

pytestmark = pytest.mark.slow  # every test here trains through real train/finetune.py subprocesses
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base corpus (miscFolk) with its tokenizer, and a fine-tuning corpus (Aird's airs) whose controls
    (origin=scotland, ...) the base tokenizer does not have."""
    root = tmp_path_factory.mktemp("finetune")
    paths = {"root": root, "base_corpus": root / "corpus-base", "ft_corpus": root / "corpus-ft", "tok": root / "tok"}
    build_corpus(BuildConfig(sources=["music21:miscFolk"], out=paths["base_corpus"], workers=1), progress=False)
    build_corpus(BuildConfig(sources=["music21:airdsAirs"], out=paths["ft_corpus"], workers=2), progress=False)
    train_base_from_corpus(paths["base_corpus"], root / "bpe", vocab_size=600)
    tokenizer_build_command(str(root / "bpe"), paths["base_corpus"], paths["tok"], units_spec="shipped")
    return paths


def _finetune(*args: str, launcher: list[str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = (launcher or [sys.executable]) + [str(ROOT / "train" / "finetune.py"),
                                                "--config", str(ROOT / "train" / "configs" / "tiny-cpu.yaml"), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"finetune failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def _summary(run: Path) -> dict:
    return json.loads((run / "final" / "training_summary.json").read_text())


@pytest.fixture(scope="module")
def base_run(setup: dict[str, Path]) -> Path:
    run = setup["root"] / "base-run"
    _finetune("--data.corpus", str(setup["base_corpus"]), "--model.tokenizer", str(setup["tok"]),
              "--checkpoint.output_dir", str(run), "--optim.max_steps", "12", "--data.max_train_tunes", "0",
              "--logging.tensorboard", "true")
    return run


def test_scratch_run_writes_a_loadable_model(base_run: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = _summary(base_run)
    assert summary["steps"] == 12 and summary["final_loss"] < summary["first_loss"]
    assert summary["tokens_seen"] > 0 and "eval_loss" in summary["eval"]
    assert summary["parameters"]["trainable"] == summary["parameters"]["total"]
    assert list((base_run / "abcgen").glob("events.out.tfevents.*"))  # tensorboard tracked the run
    final = base_run / "final"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "control_vocabulary.json",
                 "generation_config.json", "abcgen_train_config.yaml"):
        assert (final / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert model.get_input_embeddings().weight.shape[0] % 64 == 0  # padded for tensor cores
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    abc = "X:1\nT:Reload\nM:6/8\nL:1/8\nK:D\n|:dAF DFA:|\n"
    assert tokenizer.decode(tokenizer(abc, add_special_tokens=False)["input_ids"]) == abc


def test_lora_on_top_trains_adapters_and_only_the_new_and_music_token_rows(setup: dict[str, Path],
                                                                          base_run: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from abcgen.grammar.vocabulary import music_token_ids
    from abcgen.tokenization.embeddings import resize_and_init_embeddings

    run = setup["root"] / "lora-run"
    _finetune("--data.corpus", str(setup["ft_corpus"]), "--model.method", "lora", "--model.name_or_path",
              str(base_run / "final"), "--model.tokenizer", "", "--data.conditions", "origin,key,meter,rhythm",
              "--lora.r", "4", "--checkpoint.output_dir", str(run), "--optim.max_steps", "6")
    summary = _summary(run)
    assert summary["new_token_rows"] > 0  # e.g. <origin=scotland>: not in the base vocabulary
    assert 0 < summary["parameters"]["trainable"] < summary["parameters"]["total"]
    assert (run / "final" / "adapter" / "adapter_config.json").is_file()

    base_tokenizer = AutoTokenizer.from_pretrained(base_run / "final")
    tokenizer = AutoTokenizer.from_pretrained(run / "final")
    new_ids = sorted(tokenizer.convert_tokens_to_ids(t) for t in set(tokenizer.get_vocab()) - set(base_tokenizer.get_vocab()))
    assert len(new_ids) == summary["new_token_rows"] and "<origin=scotland>" in tokenizer.get_vocab()
    # What the rows were before training: the base model grown and initialised exactly as the script did.
    initial = AutoModelForCausalLM.from_pretrained(base_run / "final")
    resize_and_init_embeddings(initial, tokenizer, base_tokenizer, pad_to_multiple_of=64)
    before = initial.get_input_embeddings().weight
    after = AutoModelForCausalLM.from_pretrained(run / "final").get_input_embeddings().weight
    old = len(base_tokenizer)
    assert after.shape == before.shape
    # LoRA leaves the base rows alone, except those a tune body is written in (lora.train_music_tokens)
    music = set(music_token_ids(tokenizer))
    kept = [i for i in range(old) if i not in music]
    assert music and torch.equal(after[kept], before[kept])
    moved = (after[new_ids] - before[new_ids]).abs().amax(dim=1)
    assert bool((moved > 0).all())  # every new row was trained through trainable_token_indices
    music_moved = (after[sorted(music)] - before[sorted(music)]).abs().amax(dim=1)
    assert int((music_moved > 0).sum()) > len(music) // 2  # the music rows too (those in the tunes)


def test_kill_and_resume_reaches_the_same_losses(setup: dict[str, Path], base_run: Path) -> None:
    # LoRA with dropout: the resumed run must also restore the RNG. 30 steps cross an epoch boundary.
    common = ["--data.corpus", str(setup["ft_corpus"]), "--model.method", "lora", "--model.name_or_path",
              str(base_run / "final"), "--model.tokenizer", "", "--lora.r", "4", "--lora.dropout", "0.2",
              "--optim.schedule", "constant", "--checkpoint.save_every", "2", "--logging.eval_every", "1000",
              "--logging.num_samples", "0", "--data.max_train_tunes", "150"]
    straight, killed = setup["root"] / "straight", setup["root"] / "killed"
    _finetune(*common, "--optim.max_steps", "30", "--checkpoint.output_dir", str(straight))
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train" / "finetune.py"), "--config", str(ROOT / "train" / "configs" / "tiny-cpu.yaml"),
         *common, "--optim.max_steps", "100000", "--checkpoint.output_dir", str(killed)],
        env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "step-6").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "checkpoints" / "step-6").exists(), "the run never reached step 6"
    assert not (killed / "final").exists()
    _finetune(*common, "--optim.max_steps", "30", "--checkpoint.output_dir", str(killed), "--checkpoint.resume", "latest")
    expected = [h["loss"] for h in _summary(straight)["history"]]
    resumed = [h["loss"] for h in _summary(killed)["history"]]
    assert len(expected) == len(resumed) == 30
    assert resumed == expected  # step by step, exactly: same data order, RNG, optimiser and schedule
    assert _summary(killed)["weight_checksums"] == _summary(straight)["weight_checksums"]


def test_two_processes_train_disjoint_data_and_end_identical(setup: dict[str, Path]) -> None:
    # torchrun really starts two processes on CPU (gloo); `accelerate launch --cpu --num_processes 2`
    # would start one.
    run = setup["root"] / "ddp"
    _finetune("--data.corpus", str(setup["base_corpus"]), "--model.tokenizer", str(setup["tok"]),
              "--checkpoint.output_dir", str(run), "--optim.max_steps", "6", "--logging.record_batches", "true",
              "--logging.num_samples", "0", "--data.max_train_tunes", "0",
              launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"])
    summary = _summary(run)
    assert summary["hardware"]["processes"] == 2
    first, second = (set(shard) for shard in summary["data_shards"])
    assert len(first) == len(second) == 6 and not first & second
    assert summary["weight_checksums"][0] == summary["weight_checksums"][1]


def test_bad_config_is_a_one_line_error_naming_the_fix(setup: dict[str, Path]) -> None:
    result = _finetune("--lora.rank", "8", check=False)
    assert result.returncode != 0 and "did you mean 'r'" in result.stderr


def test_remi_lora_adds_the_remi_tokens_and_writes_a_midi_model(setup: dict[str, Path], base_run: Path) -> None:
    """``data.representation: remi`` through the same script: the REMI vocabulary added to the base's tokenizer
    (each row started from its meaning), trained through LoRA, and a final model ``midi-generation`` loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    import abcgen  # noqa: F401  (registers midi-generation)
    from abcgen.model_folder import model_representation
    from abcgen.tokenization.remi import remi_vocabulary

    corpus = setup["root"] / "corpus-remi"
    build_corpus(BuildConfig(sources=["music21:miscFolk"], out=corpus, workers=2, remi=True), progress=False)
    run = setup["root"] / "remi-run"
    _finetune("--data.corpus", str(corpus), "--data.representation", "remi", "--model.method", "lora",
              "--model.name_or_path", str(base_run / "final"), "--model.tokenizer", "", "--data.max_length", "512",
              "--lora.r", "4", "--checkpoint.output_dir", str(run), "--optim.max_steps", "6",
              "--logging.eval_every", "6", "--logging.num_samples", "1")
    summary = _summary(run)
    assert summary["new_token_rows"] >= len(remi_vocabulary())
    assert summary["data"]["train"]["tunes"] > 100 and summary["data"]["train"]["no_text"] < 10
    assert summary["samples"] and "Bar_None" in summary["samples"][0]["abc"]  # the sample logged is REMI
    final = run / "final"
    assert model_representation(final) == "remi"
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert all(token in tokenizer.get_vocab() for token in remi_vocabulary())
    assert AutoModelForCausalLM.from_pretrained(final).config.abcgen_representation == "remi"
    piece = pipeline("midi-generation", model=str(final))(meter="6/8", bars=2, programs=[40], seed=0)[0]
    assert piece["valid"], piece["problems"]
    bad = _finetune("--data.corpus", str(corpus), "--data.representation", "midi", check=False)
    assert bad.returncode == 2 and "data.representation" in bad.stderr and "abc, remi" in bad.stderr
