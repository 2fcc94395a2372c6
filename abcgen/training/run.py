"""What every training loop (LM, LSTM, VAE, GAN) decides the same way: the run's identity, the output folder,
the launcher, the evaluation split and the atomic save of ``final/``.

**Run identity.** A run is its settings that change the data order or the model (every config key but
``checkpoint.*``, ``logging.*``, ``optim.max_steps`` and the speed switches that leave the loss unchanged)
plus the fingerprints of the corpus and of the tokenizer (the folder paths themselves may move). The
identity is written to ``OUTPUT_DIR/run_identity.json`` and into every checkpoint's ``trainer_state.json``
(``extra_state["identity"]``); a resume whose identity differs is refused, naming the keys.

**Used output folders.** A fresh run into a folder that holds another run (``checkpoints/`` or ``final/``)
is refused unless it resumes (``checkpoint.resume``) or says ``checkpoint.overwrite=true``. Then the other
run's ``checkpoints/``, ``final/`` and identity are moved into ``OUTPUT_DIR/.replaced-run`` (so its higher
step numbers can neither prune the new checkpoints nor be resumed) and that folder is deleted once the new
run has saved its first checkpoint or its final model: a new run killed before then loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from abcgen.atomic import check_output_dir, remove_leftovers, replace_dir, tmp_sibling
from abcgen.errors import ConfigError
from abcgen.model_folder import has_tokenizer, merged_weight_files, safetensors_problem, tokenizer_fingerprint
from abcgen.training.config import TrainConfig, config_to_dict, save_config
from abcgen.versioned import write_versioned

log = logging.getLogger(__name__)

IDENTITY_FILE = "run_identity.json"
REPLACED = ".replaced-run"
FINAL = "final"
CHECKPOINTS = "checkpoints"

# Keys that may change between a run and its resume: how long and how often, where, what is logged, and
# the speed switches that tests/test_speed_switches.py shows leave the loss unchanged. The folder paths of
# the corpus and tokenizer are replaced by their contents' fingerprints.
RESUMABLE_PREFIXES = ("checkpoint.", "logging.")
RESUMABLE_KEYS = frozenset({
    "optim.max_steps", "data.corpus", "model.tokenizer", "data.num_workers", "data.pin_memory", "model.compile",
    "model.compile_backend", "optim.fused", "optim.loss_impl", "optim.loss_chunk_size",
})
_CHUNK = 1 << 20


def flat_config(cfg: TrainConfig) -> dict[str, Any]:
    """``{"section.key": value}`` (nested sections joined: ``model.scratch.hidden_size``)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, Mapping):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value

    walk("", config_to_dict(cfg))
    return flat


def corpus_fingerprint(folder: str | Path) -> str:
    """A blake2b digest over every file of a corpus folder (relative path, size, bytes), hidden files aside."""
    folder = Path(folder)
    digest = hashlib.blake2b(digest_size=16)
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = file.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        digest.update(f"{relative}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def run_identity(cfg: TrainConfig, tokenizer: Any | None) -> dict[str, Any]:
    """``{"fingerprint": hex, "keys": {key: value}}``: the settings that make the run what it is (see the
    module docstring), with ``data.corpus_fingerprint`` and ``model.tokenizer_fingerprint``."""
    keys = {k: v for k, v in flat_config(cfg).items()
            if k not in RESUMABLE_KEYS and not k.startswith(RESUMABLE_PREFIXES)}
    keys["data.corpus_fingerprint"] = corpus_fingerprint(cfg.data.corpus)
    keys["model.tokenizer_fingerprint"] = tokenizer_fingerprint(tokenizer) if tokenizer is not None else None
    payload = json.dumps(keys, sort_keys=True, default=str)
    return {"fingerprint": hashlib.blake2b(payload.encode(), digest_size=16).hexdigest(), "keys": keys}


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``["optim.lr: 0.001 -> 0.002", ...]`` between two identities' keys (sorted)."""
    a, b = saved.get("keys", {}), current.get("keys", {})
    return [f"{key}: {a.get(key, '(absent)')!r} -> {b.get(key, '(absent)')!r}"
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def check_resume_identity(saved: Mapping[str, Any] | None, current: Mapping[str, Any], checkpoint: str | Path) -> None:
    """Refuse to resume ``checkpoint`` (identity ``saved``) with a run whose identity differs."""
    if not saved:
        log.warning("checkpoint %s has no run identity (written by an older abcgen): its settings cannot be "
                    "checked against this run's", checkpoint)
        return
    if saved.get("fingerprint") == current.get("fingerprint"):
        return
    diffs = identity_differences(saved, current)
    raise ConfigError(f"checkpoint {str(checkpoint)!r} belongs to another run: {'; '.join(diffs) or 'fingerprints differ'}"
                      " -- these change the data order or the model; resume with the settings it was saved with, or "
                      "start a fresh run (another checkpoint.output_dir, or checkpoint.overwrite=true)")


def write_identity(out: str | Path, identity: Mapping[str, Any]) -> None:
    """``OUTPUT_DIR/run_identity.json`` (main process)."""
    write_versioned(Path(out) / IDENTITY_FILE, "run identity", 1, identity, sort_keys=True, default=str)


# --- the output folder ------------------------------------------------------------------------------------


def used_parts(out: str | Path) -> list[str]:
    """What of another run ``out`` holds: ``checkpoints/`` with a checkpoint in it, ``final/``."""
    out = Path(out)
    parts = []
    checkpoints = out / CHECKPOINTS
    if checkpoints.is_dir() and any(c.name.startswith("step-") for c in checkpoints.iterdir()):
        parts.append(f"{CHECKPOINTS}/")
    if (out / FINAL).exists():
        parts.append(f"{FINAL}/")
    return parts


def check_output(cfg: TrainConfig) -> None:
    """Before any work: ``checkpoint.output_dir`` can be written, and does not hold another run unless this
    one resumes it or says ``checkpoint.overwrite``."""
    c = cfg.checkpoint
    out = Path(c.output_dir)
    if c.overwrite and c.resume:
        raise ConfigError(f"checkpoint.overwrite=true and checkpoint.resume={c.resume!r} contradict each other: "
                          "resume the run, or replace it, not both")
    check_output_dir(out, overwrite=True)  # a file in the way, or a parent that cannot be written
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"checkpoint.output_dir={str(out)!r} is not writable: choose a folder you can write to")
    used = used_parts(out)
    if used and not c.resume and not c.overwrite:
        raise ConfigError(f"checkpoint.output_dir={str(out)!r} already holds another run ({', '.join(used)}): "
                          "resume it with --checkpoint.resume latest, replace it with --checkpoint.overwrite true, "
                          "or choose another output_dir")


def set_aside_previous_run(out: str | Path) -> Path | None:
    """Move the other run's ``checkpoints/``, ``final/`` and identity into ``OUTPUT_DIR/.replaced-run``
    (main process, ``checkpoint.overwrite``); returns that folder, or ``None`` when there was nothing."""
    out = Path(out)
    parts = [out / name for name in (CHECKPOINTS, FINAL, IDENTITY_FILE) if (out / name).exists()]
    if not parts:
        return None
    aside = out / REPLACED
    if aside.exists():  # an even older run, replaced by one that never saved: the newer one goes aside now
        shutil.rmtree(aside)
    aside.mkdir(parents=True)
    for part in parts:
        os.replace(part, aside / part.name)
    log.warning("checkpoint.overwrite: the previous run in %s was moved to %s; it is deleted once this run "
                "saves a checkpoint or its final model", out, aside)
    return aside


def drop_previous_run(out: str | Path) -> None:
    """Delete ``OUTPUT_DIR/.replaced-run`` (the new run has saved something of its own)."""
    aside = Path(out) / REPLACED
    if aside.exists():
        shutil.rmtree(aside, ignore_errors=True)
        log.info("deleted the replaced run %s", aside)


def start_run_folder(cfg: TrainConfig, accelerator: Any, identity: dict[str, Any], fresh: bool) -> None:
    """Main process: a fresh run with ``checkpoint.overwrite`` moves the other run aside; the identity and
    config are written to the run folder."""
    out = Path(cfg.checkpoint.output_dir)
    if accelerator.is_main_process:
        if fresh and cfg.checkpoint.overwrite:
            set_aside_previous_run(out)
        out.mkdir(parents=True, exist_ok=True)
        write_identity(out, identity)
        save_config(cfg, out / "config.yaml")
    accelerator.wait_for_everyone()


# --- the launcher -----------------------------------------------------------------------------------------

_WORLD_SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def check_launch(env: Mapping[str, str] | None = None) -> None:
    """Refuse ``accelerate launch --num_processes N`` (N > 1) without ``--multi_gpu``: accelerate's simple
    launcher then starts the script *once* (it only sets ``MASTER_ADDR``/``MASTER_PORT`` for the processes
    it never starts), and the run would silently train alone. Its trace: ``ACCELERATE_USE_CPU`` (every
    accelerate launcher sets it) and ``MASTER_ADDR``, but no world size from torch's or MPI's launcher."""
    env = os.environ if env is None else env
    simple_launcher = "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env and "MASTER_PORT" in env
    if simple_launcher and not any(name in env for name in _WORLD_SIZE_VARS):
        raise ConfigError("accelerate launch was asked for several processes (--num_processes > 1) but started one "
                          "(without --multi_gpu it runs the script once): for 2 processes use `accelerate launch "
                          "--multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no "
                          "train/finetune.py ...` or `torchrun --nproc_per_node 2 train/finetune.py ...`")


# --- data, cadence, summary: the same for every loop -------------------------------------------------------


def eval_split(cfg: TrainConfig) -> str | None:
    """The split evaluated on, or ``None``: ``data.eval_split: ""`` means no evaluation (every loop)."""
    return cfg.data.eval_split or None


def eval_batch_limit(cfg: TrainConfig) -> int | None:
    """Batches per evaluation, ``None`` for the whole split (``logging.eval_batches: 0``, every loop)."""
    return cfg.logging.eval_batches or None


def split_rows(cfg: TrainConfig, corpus: Mapping[str, Any]) -> dict[str, Any]:
    """``{split: rows}`` of what every loop trains and evaluates on, in that order: ``data.train_split`` (its
    first ``data.max_train_tunes`` rows when set) and ``data.eval_split`` (absent when it is empty)."""
    rows: dict[str, Any] = {}
    for key, split in (("data.train_split", cfg.data.train_split), ("data.eval_split", eval_split(cfg))):
        if split is None:
            continue
        if split not in corpus:
            raise ConfigError(f"{key}={split!r} is not a split of {str(cfg.data.corpus)!r} (it has "
                              f"{', '.join(corpus)}): name one of them")
        selected = corpus[split]
        if split == cfg.data.train_split and cfg.data.max_train_tunes:
            selected = selected.select(range(min(cfg.data.max_train_tunes, len(selected))))
        rows[split] = selected
    return rows


def log_due(cfg: TrainConfig, step: int) -> bool:
    """Whether optimiser step ``step`` (1-based) is logged: the first, then every ``logging.log_every``."""
    return step == 1 or step % cfg.logging.log_every == 0


def evaluation_due(cfg: TrainConfig, step: int) -> bool:
    """Whether the loop evaluates after step ``step``: every ``logging.eval_every`` steps and after the last."""
    return step % cfg.logging.eval_every == 0 or step == cfg.optim.max_steps


def section_config(cfg: TrainConfig) -> dict[str, Any]:
    """``{"section.key": value}``, one level deep (a nested section such as ``model.scratch`` stays a dict):
    the ``config`` of ``training_summary.json``."""
    return {f"{section}.{key}": value for section, values in config_to_dict(cfg).items()
            if isinstance(values, Mapping) for key, value in values.items()}


def tracker_config(cfg: TrainConfig) -> dict[str, Any]:
    """The scalar settings handed to the experiment tracker (``accelerator.init_trackers``)."""
    return {k: v for k, v in section_config(cfg).items() if isinstance(v, int | float | str | bool)}


def hardware_summary(accelerator: Any) -> dict[str, Any]:
    """Where the run ran, for ``training_summary.json``."""
    return {"processes": accelerator.num_processes, "device": str(accelerator.device),
            "mixed_precision": accelerator.mixed_precision, "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform()}


def check_corpus(cfg: TrainConfig) -> None:
    """Before any work: ``data.corpus`` is a corpus folder with the train (and eval) split."""
    corpus = Path(cfg.data.corpus)
    if not corpus.is_dir():
        raise ConfigError(f"data.corpus={str(corpus)!r} does not exist: give a folder written by "
                          "'abcgen data build --out DIR'")
    index = corpus / "dataset_dict.json"
    try:
        splits = json.loads(index.read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"data.corpus={str(corpus)!r} is not a corpus folder (no readable dataset_dict.json): "
                          "give a folder written by 'abcgen data build --out DIR'") from exc
    for key, split in (("data.train_split", cfg.data.train_split), ("data.eval_split", eval_split(cfg))):
        if split is not None and split not in splits:
            raise ConfigError(f"{key}={split!r} is not a split of {str(corpus)!r} (it has {', '.join(splits)}): "
                              "name one of them" + ("; empty = no evaluation" if key == "data.eval_split" else ""))
    if cfg.model.architecture != "gan" and not (corpus / "control_vocabulary.json").is_file():
        raise ConfigError(f"data.corpus={str(corpus)!r} has no control_vocabulary.json: rebuild it with "
                          "'abcgen data build'")


# --- the final model folder --------------------------------------------------------------------------------


def save_final_folder(cfg: TrainConfig, accelerator: Any, write: Callable[[Path], None]) -> Path:
    """Write ``OUTPUT_DIR/final`` whole or not at all, for every loop: ``write(folder)`` fills a temporary
    sibling (main process only), which then replaces ``final/`` by rename (``abcgen.atomic.replace_dir``).
    A kill or an error while writing leaves the previous ``final/`` as it was. Every process must call it."""
    out = Path(cfg.checkpoint.output_dir)
    final = out / FINAL
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        remove_leftovers(final)
        tmp = tmp_sibling(final)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            write(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        replace_dir(tmp, final)
        drop_previous_run(out)
    accelerator.wait_for_everyone()
    return final


# --- the model and tokenizer folders ----------------------------------------------------------------------


def _looks_like_path(name: str) -> bool:
    """A local path rather than a hub id (``org/name``): absolute, relative (``./``, ``../``, ``~``) or deeper."""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") >= 2 or "\\" in name


def check_model_inputs(cfg: TrainConfig) -> None:
    """Before any work: ``model.tokenizer`` is a tokenizer folder, and a local ``model.name_or_path`` is a
    model folder whose weight files are whole (a truncated safetensors file would fail only after the
    tokenising, deep inside the loader)."""
    m = cfg.model
    if m.tokenizer:
        folder = Path(m.tokenizer)
        if not folder.is_dir():
            raise ConfigError(f"model.tokenizer={m.tokenizer!r} does not exist: give a folder from 'abcgen tokenizer "
                              "build', or leave it empty to build one from model.name_or_path")
        if not has_tokenizer(folder):
            raise ConfigError(f"model.tokenizer={m.tokenizer!r} holds no tokenizer (tokenizer.json + "
                              "tokenizer_config.json): give a folder from 'abcgen tokenizer build'")
    if m.name_or_path and m.method != "scratch":
        folder = Path(m.name_or_path).expanduser()
        if not folder.exists():
            if _looks_like_path(m.name_or_path):
                raise ConfigError(f"model.name_or_path={m.name_or_path!r} does not exist: give the model folder "
                                  "(e.g. OUTPUT_DIR/final of an earlier run) or a hub id")
            return  # a hub id: from_pretrained reports it
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ConfigError(f"model.name_or_path={m.name_or_path!r} is not a model folder (no config.json): give "
                              "the folder a model was saved to (save_pretrained), or a hub id")
        for weights in merged_weight_files(folder):
            problem = safetensors_problem(weights)
            if problem:
                raise ConfigError(f"model.name_or_path={m.name_or_path!r} cannot be loaded: {problem}; copy or "
                                  "download the model again")
