"""The run configuration: shipped YAMLs, precedence, strict keys, types, validation, help; accelerate configs."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from abcgen.controls import CONTROL_NAMES
from abcgen.errors import ConfigError
from abcgen.training.config import (
    TrainConfig,
    config_to_dict,
    format_help,
    load_config,
    parse_args,
    save_config,
)

ROOT = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted((ROOT / "train" / "configs").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((ROOT / "train" / "accelerate").glob("*.yaml"))

# A valid base every test can start from without a file.
VALID = ["model.method=scratch", "model.tokenizer=tok", "data.corpus=corpus"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_run_configs_parse_and_validate() -> None:
    names = {p.name for p in RUN_CONFIGS}
    assert {"tiny-cpu.yaml", "quickstart-base.yaml", "quickstart-lora.yaml", "qwen2.5-0.5b-lora.yaml",
            "llama-3.2-1b-lora.yaml"} <= names
    loaded = {}  # each file parsed once (a parse is ~0.1 s of jsonargparse)
    for path in RUN_CONFIGS:
        cfg = loaded[path.name] = load_config(path)
        assert cfg.validate() is cfg
        assert not cfg.data.corpus.startswith("/") and not cfg.checkpoint.output_dir.startswith("/"), path
    qwen = loaded["qwen2.5-0.5b-lora.yaml"]
    assert (qwen.model.name_or_path, qwen.model.method, qwen.data.max_length) == ("Qwen/Qwen2.5-0.5B", "lora", 2048)
    llama = loaded["llama-3.2-1b-lora.yaml"]
    assert llama.model.name_or_path == "meta-llama/Llama-3.2-1B"
    tiny = loaded["tiny-cpu.yaml"]
    assert (tiny.model.method, tiny.data.max_length, tiny.optim.micro_batch_size) == ("scratch", 256, 8)
    lora = loaded["quickstart-lora.yaml"]
    base = loaded["quickstart-base.yaml"]
    assert lora.model.name_or_path == f"{base.checkpoint.output_dir}/final"  # stage 2 starts from stage 1's model
    assert lora.data.conditions == ["rhythm", "key", "meter"]


def test_shipped_yamls_say_what_they_are_for() -> None:
    for path in RUN_CONFIGS:
        assert path.read_text().startswith("#"), f"{path.name}: start with a comment saying what it is for"


def test_defaults_then_yaml_then_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {method: scratch, tokenizer: tok}\ndata: {corpus: c}\n"
                           "lora: {r: 8, alpha: 16}\noptim: {lr: 1e-4}\n")
    cfg = load_config(path, ["lora.r=32"])
    assert cfg.lora.r == 32             # command line beats YAML
    assert cfg.lora.alpha == 16         # YAML beats the default
    assert cfg.lora.dropout == 0.05     # default
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)  # YAML's "1e-4" string
    cfg = parse_args(["--config", str(path), "--lora.r", "64", "--optim.lr=3e-4", "--resume", "latest"])
    assert (cfg.lora.r, cfg.optim.lr, cfg.checkpoint.resume) == (64, 3e-4, "latest")


def test_types_lists_bools_and_nesting(tmp_path: Path) -> None:
    cfg = parse_args([*(f"--{o}" for o in VALID), "--data.conditions", "key,meter", "--model.gradient_checkpointing",
                      "--data.max_length", "128", "--model.scratch.max_position_embeddings", "128",
                      "--lora.train_new_tokens", "false", "--optim.max_grad_norm", "2"])
    assert cfg.data.conditions == ["key", "meter"]
    assert cfg.model.gradient_checkpointing is True and cfg.lora.train_new_tokens is False
    assert cfg.optim.max_grad_norm == 2.0 and isinstance(cfg.optim.max_grad_norm, float)  # int for a float
    assert parse_args([*(f"--{o}" for o in VALID), "--data.conditions="]).data.conditions == []
    path = write(tmp_path, "model: {method: scratch, tokenizer: t}\ndata:\n  corpus: c\n  conditions: [rhythm]\n"
                           "lora:\n")  # an empty section is allowed
    assert load_config(path).data.conditions == ["rhythm"]
    assert TrainConfig().data.conditions == list(CONTROL_NAMES)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--lora.rank", "32"], "did you mean 'r'"),
    (["--lora.rnak", "32"], "did you mean 'r'"),
    (["--optim.learning_rate", "1e-4"], "did you mean 'lr'"),
    (["--lorra.r", "32"], "did you mean 'lora'"),
    (["--lora.lr", "1e-4"], "did you mean 'optim.lr'"),
    (["--model.scratch.hidden", "64"], "did you mean 'hidden_size'"),
    (["--optim.max_step", "10"], "did you mean 'max_steps'"),
])
def test_unknown_command_line_key_names_the_closest(argv: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_args([*(f"--{o}" for o in VALID), *argv])


def test_unknown_yaml_keys_at_every_level(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  methd: scratch\n  scratch: {hiden_size: 64}\nlorra: {r: 4}\n"
                           "lr: 1.0e-4\ndata: {corpus: c}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "'model.methd' in section 'model': did you mean 'method'" in message
    assert "'model.scratch.hiden_size' in section 'model.scratch': did you mean 'hidden_size'" in message
    assert "unknown key 'lorra'" in message and "did you mean 'lora'" in message
    assert "'lr' belongs to section 'optim'" in message
    assert str(path) in message


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("model: {gradient_checkpointing: maybe}", "model.gradient_checkpointing='maybe' is not a bool"),
    ("data: {max_length: 12.5}", "data.max_length=12.5 is not an int"),
    ("data: {conditions: 3}", "data.conditions=3 is not a list of strings"),
    ("lora: {r: sixteen}", "lora.r='sixteen' is not an int"),
    ("optim: {lr: fast}", "optim.lr='fast' is not a float"),
    ("logging: {tensorboard: 1}", "logging.tensorboard=1 is not a bool"),
    ("model: 3", "model must be a mapping of keys"),
])
def test_wrong_types_name_the_expected_type(tmp_path: Path, yaml_text: str, expected: str) -> None:
    # The parser stops at the first bad value (unknown keys are all reported at once, above).
    path = write(tmp_path, "model: {method: scratch, tokenizer: t}\ndata: {corpus: c}\n" + yaml_text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_wrong_command_line_values_are_one_line() -> None:
    for argv, expected in ((["--lora.r", "abc"], "lora.r='abc' is not an int: write a whole number"),
                           (["--optim.lr", "fast"], "optim.lr='fast' is not a float"),
                           (["--lora", "3"], "'lora' is a section, not a value: set one of its keys"),
                           (["--lora.r=1.5"], "lora.r='1.5' is not an int")):
        with pytest.raises(ConfigError) as info:
            parse_args([*(f"--{o}" for o in VALID), *argv])
        assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_validation_collects_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["model.method=lorra", "model.dtype=bf16", "data.loss_on=prefix",
                           "optim.schedule=cosin", "lora.dropout=1.0", "optim.micro_batch_size=0", "optim.max_grad_norm=0",
                           "optim.warmup_steps=50", "optim.max_steps=50", "data.conditions=key,mode"])
    message = str(info.value)
    assert "problems in the training config" in message
    for expected in ("model.method='lorra' is not one of lora, full, scratch: did you mean 'lora'",
                     "model.dtype='bf16'", "data.loss_on='prefix'", "optim.schedule='cosin'",
                     "lora.dropout=1.0 must be in [0, 1)", "optim.micro_batch_size=0 must be >= 1",
                     "optim.max_grad_norm=0.0 must be > 0",
                     "optim.warmup_steps=50 must be smaller than optim.max_steps=50",
                     "data.conditions has unknown names ['mode']", "data.corpus is empty"):
        assert expected in message, expected


def test_method_rules() -> None:
    with pytest.raises(ConfigError, match="model.name_or_path is empty but model.method='lora'"):
        load_config(None, ["data.corpus=c"])
    assert load_config(None, ["data.corpus=c", "model.name_or_path=org/model"]).model.method == "lora"
    with pytest.raises(ConfigError, match="method=scratch needs a tokenizer"):
        load_config(None, ["data.corpus=c", "model.method=scratch"])
    with pytest.raises(ConfigError) as info:
        load_config(None, [*VALID, "model.scratch.hidden_size=100", "model.scratch.num_heads=3",
                           "model.scratch.num_kv_heads=2", "data.max_length=2048"])
    message = str(info.value)
    assert "num_heads=3 does not divide model.scratch.hidden_size=100" in message
    assert "num_kv_heads=2 does not divide model.scratch.num_heads=3" in message
    assert "max_position_embeddings=1024 is shorter than data.max_length=2048" in message


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "train/configs/quickstart-lora.yaml", ["lora.r=4", "optim.lr=1e-5"])
    path = save_config(cfg, tmp_path / "config.yaml")
    data = yaml.safe_load(path.read_text())
    assert data["schema_version"] == 1 and data["lora"]["r"] == 4
    assert load_config(path) == cfg
    assert config_to_dict(cfg)["optim"]["lr"] == 1e-5
    data["schema_version"] = 99
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="schema_version 99"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_help_lists_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["--lora.rank", "3", "--help"])  # help wins over a bad key
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text == format_help()

    def keys(cls: type, prefix: str) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{prefix}{f.name} has no help text"
            factory = f.default_factory
            if isinstance(factory, type) and dataclasses.is_dataclass(factory):  # a section
                out += keys(factory, f"{prefix}{f.name}.")
            else:
                out.append(f"{prefix}{f.name}")
        return out

    all_keys = keys(TrainConfig, "")
    assert len(all_keys) > 40
    for key in all_keys:
        assert f"--{key} " in text, key
    flat = " ".join(text.split())  # the formatter wraps lines at the terminal width
    assert "--lora.r R adapter rank; higher = more capacity, more trainable parameters and memory (type: int, " \
           "default: 16)" in flat
    assert "--config CONFIG a YAML file of sections" in flat and "--resume RESUME short for" in flat


def test_command_line_mistakes() -> None:
    with pytest.raises(ConfigError, match="unexpected argument 'lora.r=3'"):
        parse_args([*(f"--{o}" for o in VALID), "lora.r=3"])
    with pytest.raises(ConfigError, match="--lora.r has no value"):
        parse_args([*(f"--{o}" for o in VALID), "--lora.r"])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[sys.executable], [sys.executable, "-m", "accelerate.commands.launch",
                                                         "--config_file", "train/accelerate/cpu.yaml"]],
                         ids=["python", "accelerate-launch"])
def test_the_real_command_lines(launcher: list[str]) -> None:
    """What users type: the file, then overrides; a typo is one line on stderr with the nearest key, exit 2."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [*launcher, "train/finetune.py", "--config", "train/configs/tiny-cpu.yaml", "--optim.lr", "1e-3",
               "--lora.r", "32", "--lora.rnak", "8"]
    ran = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    lines = [line for line in ran.stderr.splitlines() if line.startswith("error: ")]
    # (accelerate's launcher prints its own traceback when the script exits non-zero: not the script's)
    assert ran.returncode != 0 and len(lines) == 1 and 'finetune.py", line' not in ran.stderr, ran.stderr[-3000:]
    assert "unknown key 'lora.rnak' in section 'lora': did you mean 'r'?" in lines[0]
    if launcher == [sys.executable]:
        assert ran.returncode == 2
        shown = subprocess.run([*launcher, "train/finetune.py", "--help"], capture_output=True, text=True, env=env,
                               cwd=ROOT, timeout=300)
        assert shown.returncode == 0 and "--optim.lr LR" in shown.stdout and "peak learning rate" in shown.stdout


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_load_with_accelerates_own_loader(path: Path) -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    assert config.mixed_precision in ("no", "bf16", "fp16")
    # `accelerate launch` turns fsdp_config / deepspeed_config keys into its own flags; a key it does not
    # know would be ignored silently, so check each one against the launcher's parser.
    flags = {action.dest for action in launch_command_parser()._actions}
    for key in config.fsdp_config:
        assert key in flags, f"{path.name}: fsdp_config.{key} is not an accelerate launch option"
    for key in config.deepspeed_config:
        assert key in flags, f"{path.name}: deepspeed_config.{key} is not an accelerate launch option"
        assert key != "gradient_accumulation_steps", "leave accumulation to optim.grad_accum_steps"
    expected = {
        "cpu.yaml": DistributedType.NO, "single-gpu.yaml": DistributedType.NO,
        "multi-gpu-ddp.yaml": DistributedType.MULTI_GPU, "fsdp2.yaml": DistributedType.FSDP,
        "deepspeed-zero2.yaml": DistributedType.DEEPSPEED,
    }
    assert config.distributed_type == expected[path.name]
    if path.name == "cpu.yaml":
        assert config.use_cpu is True and config.num_processes == 1
    if path.name == "fsdp2.yaml":
        assert config.fsdp_config["fsdp_version"] == 2
    if path.name == "deepspeed-zero2.yaml":
        assert config.deepspeed_config["zero_stage"] == 2


def test_all_five_accelerate_configs_exist() -> None:
    assert {p.name for p in ACCELERATE_CONFIGS} == {"cpu.yaml", "single-gpu.yaml", "multi-gpu-ddp.yaml",
                                                     "fsdp2.yaml", "deepspeed-zero2.yaml"}
