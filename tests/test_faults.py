"""Faults a real run meets: two processes, a used output folder, a changed setting on resume, a kill during
the final save, a damaged checkpoint, an empty eval split, a foreign tokenizer, a wrong launcher, config
mistakes. train/finetune.py runs as users run it (real subprocesses, tiny models, offline, CPU) where the
fault needs it; the rest in-process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from abcgen.corpus.build import BuildConfig, build_corpus
from abcgen.errors import ConfigError
from abcgen.model_folder import (
    CONFIG_KEY,
    IDENTITY_FILE,
    check_tokenizer_matches,
    safetensors_problem,
    tokenizer_fingerprint,
    write_model_identity,
)
from abcgen.tokenization.base_bpe import train_base_from_corpus
from abcgen.tokenization.build import tokenizer_build_command
from abcgen.training.checkpoint import checkpoint_problem, find_checkpoint
from abcgen.training.config import TrainConfig
from abcgen.training.run import check_launch, identity_differences, run_identity

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
FAST = ["--logging.num_samples", "0", "--logging.eval_every", "1000", "--data.max_train_tunes", "0"]


def _finetune_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("abcgen_finetune_faults", ROOT / "train" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A corpus of real tunes (music21's miscFolk) and a music tokenizer built on it."""
    root = tmp_path_factory.mktemp("faults")
    build_corpus(BuildConfig(sources=["music21:miscFolk"], out=root / "corpus", workers=1), progress=False)
    train_base_from_corpus(root / "corpus", root / "bpe", vocab_size=600)
    tokenizer_build_command(str(root / "bpe"), root / "corpus", root / "tok", units_spec="shipped")
    return {"root": root, "corpus": root / "corpus", "tok": root / "tok"}


def _finetune(setup: dict[str, Path], out: Path, *args: str, launcher: list[str] | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    command = (launcher or [sys.executable]) + [
        str(ROOT / "train" / "finetune.py"), "--config", str(ROOT / "train" / "configs" / "tiny-cpu.yaml"),
        "--data.corpus", str(setup["corpus"]), "--model.tokenizer", str(setup["tok"]),
        "--checkpoint.output_dir", str(out), *FAST, *args]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"finetune failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def _summary(out: Path) -> dict:
    return json.loads((out / "final" / "training_summary.json").read_text())


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# --- 1. one learning-rate schedule whatever the process count ------------------------------------------------


@pytest.mark.slow
def test_lr_history_of_two_processes_equals_one_process(setup: dict[str, Path]) -> None:
    # Also: data.eval_split "" means no evaluation in the LM loop (it raised KeyError), reported as none.
    args = ["--optim.schedule", "linear", "--optim.warmup_steps", "2", "--optim.max_steps", "6",
            "--checkpoint.save_every", "1000", "--data.eval_split", ""]
    one, two = setup["root"] / "lr-1", setup["root"] / "lr-2"
    _finetune(setup, one, *args)
    result = _finetune(setup, two, *args, launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"])
    assert "world size 2" in result.stderr  # logged at start, with the per-process micro-batch
    assert _summary(two)["hardware"]["processes"] == 2
    lr_one = [h["lr"] for h in _summary(one)["history"]]
    lr_two = [h["lr"] for h in _summary(two)["history"]]
    assert lr_one == pytest.approx([5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0])  # warm-up 2, then linear to 0
    assert lr_two == lr_one  # step by step (it was [1e-3, 7.5e-4, 2.5e-4, 0, 0, 0]: two steps per step)
    for out in (one, two):
        assert _summary(out)["eval"] == {}
        assert not any("eval_loss" in h for h in _summary(out)["history"])


def test_the_accelerator_steps_schedulers_once_per_call() -> None:
    # the LM, LSTM and VAE loops all get their Accelerator from setup_accelerator
    from accelerate.state import AcceleratorState

    finetune = _finetune_module()
    cfg = TrainConfig()
    cfg.logging.tensorboard = False
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        accelerator = finetune.setup_accelerator(cfg)
        assert accelerator.step_scheduler_with_optimizer is False
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


# --- 2. run identity: used folders, changed settings ------------------------------------------------------


@pytest.mark.slow
def test_a_fresh_run_in_a_used_folder_is_refused_and_overwrite_replaces_it(setup: dict[str, Path]) -> None:
    out = setup["root"] / "used"
    _finetune(setup, out, "--optim.max_steps", "6", "--checkpoint.save_every", "2")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    old_final = (out / "final" / "model.safetensors").read_bytes()

    refused = _finetune(setup, out, "--optim.max_steps", "3", "--checkpoint.save_every", "2", "--optim.seed", "1",
                        check=False)
    _one_line_error(refused, str(out), "--checkpoint.overwrite true", "--checkpoint.resume latest")
    assert (out / "final" / "model.safetensors").read_bytes() == old_final  # untouched

    _finetune(setup, out, "--optim.max_steps", "3", "--checkpoint.save_every", "2", "--optim.seed", "1",
              "--checkpoint.overwrite", "true")
    # the old run's step-4 is gone (it would have pruned the new step-2 and been resumed by 'latest')
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2"]
    assert not (out / ".replaced-run").exists()
    identity = json.loads((out / "run_identity.json").read_text())
    state = json.loads((out / "checkpoints" / "step-2" / "trainer_state.json").read_text())
    assert state["extra_state"]["identity"]["fingerprint"] == identity["fingerprint"]
    assert identity["keys"]["optim.seed"] == 1
    assert _summary(out)["run_fingerprint"] == identity["fingerprint"] and _summary(out)["steps"] == 3


@pytest.mark.slow
def test_resume_with_a_changed_setting_is_refused_naming_the_key(setup: dict[str, Path]) -> None:
    out = setup["root"] / "resume-identity"
    _finetune(setup, out, "--optim.max_steps", "4", "--checkpoint.save_every", "2")
    refused = _finetune(setup, out, "--optim.max_steps", "4", "--checkpoint.save_every", "2", "--optim.lr", "0.002",
                        "--checkpoint.resume", "latest", check=False)
    _one_line_error(refused, "optim.lr", "0.001", "0.002", "step-2")
    refused = _finetune(setup, out, "--optim.max_steps", "4", "--checkpoint.save_every", "2",
                        "--optim.micro_batch_size", "4", "--checkpoint.resume", "latest", check=False)
    _one_line_error(refused, "optim.micro_batch_size")
    # how long and how often may change: a longer run continues the same one
    _finetune(setup, out, "--optim.max_steps", "5", "--checkpoint.save_every", "3", "--logging.log_every", "2",
              "--checkpoint.resume", "latest")
    assert _summary(out)["steps"] == 5


def test_identity_keeps_what_changes_the_run_and_drops_what_does_not(setup: dict[str, Path]) -> None:
    from abcgen.tokenization.extend import load_music_tokenizer

    tokenizer = load_music_tokenizer(setup["tok"])
    cfg = TrainConfig()
    cfg.data.corpus = str(setup["corpus"])
    base = run_identity(cfg, tokenizer)
    cfg.optim.max_steps, cfg.checkpoint.save_every, cfg.logging.eval_every = 7, 3, 2
    assert run_identity(cfg, tokenizer)["fingerprint"] == base["fingerprint"]
    cfg.optim.grad_accum_steps, cfg.data.max_length = 2, 128
    changed = run_identity(cfg, tokenizer)
    assert [d.split(":")[0] for d in identity_differences(base, changed)] == ["data.max_length",
                                                                               "optim.grad_accum_steps"]
    tokenizer.add_tokens(["<new-token>"])
    assert "model.tokenizer_fingerprint" in identity_differences(changed, run_identity(cfg, tokenizer))[0]


# --- 7. final/ written atomically ------------------------------------------------------------------------------


class _MainProcess:
    """The Accelerator as save_final sees it on the main process of one."""

    is_main_process = True

    def wait_for_everyone(self) -> None:
        pass

    def unwrap_model(self, model):  # noqa: ANN001, ANN201
        return model


def test_a_kill_during_the_final_save_leaves_the_old_final_loadable(tmp_path: Path) -> None:
    from tiny_models import tiny_causal_lm
    from transformers import AutoModelForCausalLM

    finetune = _finetune_module()
    final = tmp_path / "run" / "final"
    old = tiny_causal_lm(64, tied=True, seed=0)
    old.save_pretrained(final)
    new = tiny_causal_lm(64, tied=True, seed=1)
    real_save = new.save_pretrained

    def killed_midway(folder, **kwargs):  # noqa: ANN001, ANN003, ANN202
        real_save(folder, **kwargs)
        weights = Path(folder) / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])  # half written ...
        raise KeyboardInterrupt  # ... when the kill came

    new.save_pretrained = killed_midway
    cfg = TrainConfig()
    cfg.model.method, cfg.checkpoint.output_dir = "full", str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        finetune.save_final(cfg, _MainProcess(), new, tokenizer=None, summary={})
    reloaded = AutoModelForCausalLM.from_pretrained(final)  # the old final/, whole
    for (name, before), after in zip(old.state_dict().items(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(before, after), name
    assert sorted(p.name for p in final.parent.iterdir()) == ["final"]  # no temporary folder left behind


def test_the_vae_and_gan_loops_save_final_through_the_same_atomic_writer() -> None:
    import inspect

    finetune = _finetune_module()
    for module in (finetune.family_module("vae"), finetune.family_module("gan")):
        source = inspect.getsource(module)
        assert "save_final_folder(" in source and "shutil.rmtree(final)" not in source


# --- 8. damaged checkpoints ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(setup: dict[str, Path]) -> None:
    out = setup["root"] / "truncated"
    args = ["--optim.max_steps", "6", "--checkpoint.save_every", "2"]
    _finetune(setup, out, *args)
    straight = [h["loss"] for h in _summary(out)["history"]]
    weights = out / "checkpoints" / "step-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    named = _finetune(setup, out, *args, "--checkpoint.resume", "step-4", check=False)
    _one_line_error(named, "step-4", "truncated")
    resumed = _finetune(setup, out, *args, "--checkpoint.resume", "latest")
    assert "skipping checkpoint" in resumed.stderr and "step-4: model.safetensors is truncated" in resumed.stderr
    assert "resumed from" in resumed.stderr and "step-2" in resumed.stderr
    assert [h["loss"] for h in _summary(out)["history"]] == straight  # continued exactly from step 2
    assert checkpoint_problem(out / "checkpoints" / "step-4") is None  # saved again, whole


def test_checkpoint_problems_name_the_damage(tmp_path: Path) -> None:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from abcgen.training.checkpoint import save_checkpoint

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        accelerator = Accelerator(cpu=True)
        model = accelerator.prepare(torch.nn.Linear(4, 3))
        assert model is not None
        for step in (1, 2, 3):
            save_checkpoint(accelerator, tmp_path, step, {"step": step}, keep_last=3)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    root = tmp_path / "checkpoints"
    assert checkpoint_problem(root / "step-3") is None
    (root / "step-3" / "trainer_state.json").write_text("{not json")
    (root / "step-2" / "random_states_0.pkl").unlink()
    assert "not valid JSON" in checkpoint_problem(root / "step-3")
    assert "random_states_0.pkl" in checkpoint_problem(root / "step-2")
    assert find_checkpoint(tmp_path, "latest") == root / "step-1"
    with pytest.raises(ConfigError, match="'step-3' is damaged: trainer_state.json is not valid JSON"):
        find_checkpoint(tmp_path, "step-3")
    (root / "step-1" / "model.safetensors").write_bytes(b"\x10")
    assert "truncated" in safetensors_problem(root / "step-1" / "model.safetensors")
    with pytest.raises(ConfigError, match="no intact checkpoint"):
        find_checkpoint(tmp_path, "latest")


# --- 5. no evaluation is not a perfect score ----------------------------------------------------------------


def test_evaluation_over_no_token_is_none_and_zero_batches_means_the_whole_split() -> None:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from tiny_models import tiny_causal_lm

    finetune = _finetune_module()
    model = tiny_causal_lm(64, tied=True)
    ids = torch.arange(1, 9).view(1, 8)
    batch = {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(8).view(1, 8)}
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        accelerator = Accelerator(cpu=True)
        assert finetune.evaluate(model, [], accelerator, 2) is None  # was eval loss 0.0, perplexity 1.0
        whole = finetune.evaluate(model, [batch] * 3, accelerator, 0)  # 0 = the whole split (it evaluated none)
        assert whole is not None and whole["eval_tokens"] == 3 * 7 and whole["eval_loss"] > 0
        assert finetune.evaluate(model, [batch] * 3, accelerator, 1)["eval_tokens"] == 7
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_vae_and_gan_report_no_evaluation_on_an_empty_split() -> None:
    finetune = _finetune_module()
    evaluate_vae = finetune.family_module("vae").evaluate_vae
    wasserstein_estimate = finetune.family_module("gan").wasserstein_estimate

    assert evaluate_vae(SimpleNamespace(), None, [], batch_size=4, max_batches=0, reconstruct=0) is None
    assert wasserstein_estimate(SimpleNamespace(), torch.zeros(0, 2), torch.zeros(0, 3), 4, None, 0) is None


# --- 4. the tokenizer belongs to the model ------------------------------------------------------------------


def test_a_foreign_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    from tiny_models import tiny_base_tokenizer, tiny_causal_lm

    tokenizer = tiny_base_tokenizer(tmp_path / "tok", vocab_size=300)
    small = tiny_causal_lm(64, tied=True)
    with pytest.raises(ConfigError, match=r"has \d+ tokens but model .* has only 64 embedding rows"):
        check_tokenizer_matches(small, tokenizer)
    folder = tmp_path / "model"
    model = tiny_causal_lm(-(-len(tokenizer) // 64) * 64, tied=True)
    model.save_pretrained(folder)
    write_model_identity(folder, tokenizer)
    check_tokenizer_matches(folder, tokenizer)  # its own tokenizer
    other = tiny_base_tokenizer(tmp_path / "other", vocab_size=290)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    with pytest.raises(ConfigError, match=f"not the one model .* was trained with .*{IDENTITY_FILE}"):
        check_tokenizer_matches(folder, other)
    setattr(model.config, CONFIG_KEY, tokenizer_fingerprint(tokenizer))  # as training sets it
    model.save_pretrained(folder)
    reloaded = type(model).from_pretrained(folder)
    check_tokenizer_matches(reloaded, tokenizer)
    with pytest.raises(ConfigError, match="not the one model"):
        check_tokenizer_matches(reloaded, other)  # a loaded model carries the fingerprint in its config
    check_tokenizer_matches(reloaded, other, fingerprint=False)  # the size alone is fine


# --- 11. the launcher ---------------------------------------------------------------------------------------------


def test_accelerate_launch_without_multi_gpu_is_refused() -> None:
    simple = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node 2"):
        check_launch(simple)
    check_launch({**simple, "WORLD_SIZE": "2"})  # --multi_gpu / torchrun: the processes are there
    check_launch({"ACCELERATE_USE_CPU": "True"})  # one process asked for, one started
    check_launch({})


@pytest.mark.slow
def test_accelerate_launch_cpu_two_processes_says_how_to_get_two(setup: dict[str, Path]) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    result = _finetune(setup, setup["root"] / "launch", launcher=[str(accelerate), "launch", "--cpu",
                                                                  "--num_processes", "2"], check=False)
    # the script's one line and exit code 2; accelerate's launcher then adds its own traceback and exit 1
    assert result.returncode != 0 and "returned non-zero exit status 2" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--multi_gpu --num_processes 2" in errors[0]
    assert "torchrun --nproc_per_node 2" in errors[0]
    assert not (setup["root"] / "launch").exists()  # refused before any work


# --- 10. config mistakes: one line, exit 2, before any work ------------------------------------------------------


def _truncated_model(tmp_path: Path) -> str:
    from tiny_models import tiny_causal_lm

    folder = tmp_path / "truncated-model"
    tiny_causal_lm(64, tied=True).save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return str(folder)


@pytest.mark.parametrize(("args", "needles"), [
    (["--optim.lrr", "1e-3"], ["optim.lrr", "did you mean 'lr'"]),
    (["--optim.lr", "abc"], ["optim.lr='abc'", "not a float"]),
    (["--optim.micro_batch_size", "0"], ["optim.micro_batch_size=0"]),
    (["--data.corpus", "{tmp}/no-corpus"], ["no-corpus", "does not exist"]),
    (["--model.tokenizer", "{tmp}/no-tokenizer"], ["no-tokenizer", "does not exist"]),
    (["--model.method", "lora", "--model.name_or_path", "{tmp}/no/model"], ["no/model", "does not exist"]),
    (["--model.method", "full", "--model.name_or_path", "{truncated}"], ["truncated-model", "truncated"]),
    (["--checkpoint.output_dir", "{tmp}/file/run"], ["file", "not a writable folder"]),
    (["--data.eval_split", "valid"], ["data.eval_split='valid'", "validation"]),
])
def test_config_mistakes_are_one_line_before_any_work(setup: dict[str, Path], tmp_path: Path, args: list[str],
                                                      needles: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    finetune = _finetune_module()
    (tmp_path / "file").write_text("in the way")
    values = {"tmp": str(tmp_path), "truncated": _truncated_model(tmp_path) if "{truncated}" in args else ""}
    argv = ["--config", str(ROOT / "train" / "configs" / "tiny-cpu.yaml"), "--data.corpus", str(setup["corpus"]),
            "--model.tokenizer", str(setup["tok"]), "--checkpoint.output_dir", str(tmp_path / "run"),
            *[a.format(**values) for a in args]]
    capsys.readouterr()  # what building the fixtures printed
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "run").exists()  # nothing written: checked before the work
    with pytest.raises(SystemExit) as exit_info:  # -v: the traceback too, the same exit code
        finetune.main([*argv, "-v"])
    assert exit_info.value.code == 2 and "Traceback" in capsys.readouterr().err
