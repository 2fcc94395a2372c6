"""Resumable checkpoints written atomically: a run killed mid-write never loses its last good checkpoint.

Layout under the run folder (``checkpoint.output_dir``)::

    checkpoints/
        step-200/                 # complete: accelerate's state + trainer_state.json (written last)
        step-400/
        .tmp-step-600/            # being written, or left by a kill: ignored, removed by the next save

A checkpoint is ``accelerator.save_state`` (model, optimizer, schedulers, GradScaler, the samplers of
prepared dataloaders, objects registered with ``accelerator.register_for_checkpointing``, and every
process's RNG states: python, numpy, torch CPU and CUDA, in ``random_states_<rank>.pkl``) plus
``trainer_state.json`` (the step and whatever the loop passes as ``extra_state``: data position, losses).
Everything is written into ``.tmp-step-N``, flushed to disk (fsync), and only then renamed to ``step-N``
-- a rename is atomic on POSIX file systems, so ``step-N`` either is complete or does not exist.
``trainer_state.json`` doubles as the completeness marker. Several processes must share the file
system (one machine, or a shared disk across nodes).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from abcgen.errors import ConfigError
from abcgen.model_folder import safetensors_problem
from abcgen.versioned import read_versioned

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CHECKPOINTS = "checkpoints"
MARKER = "trainer_state.json"  # written last: its presence means the checkpoint is complete
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TMP_PREFIX = ".tmp-step-"
_OLD_PREFIX = ".old-step-"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives once complete."""
    return Path(output_dir) / CHECKPOINTS / f"step-{step}"


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` holds a finished checkpoint (its marker file is there)."""
    return (Path(path) / MARKER).is_file()


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir/checkpoints`` as (step, path), oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and is_complete(child):
            found.append((int(match.group(1)), child))
    return sorted(found)


def _fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` and the folders themselves, so a power cut cannot leave a renamed
    checkpoint with empty files."""
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_leftovers(root: Path) -> None:
    """Delete half-written (``.tmp-step-*``) folders of earlier runs. A ``.old-step-N`` (a kill between
    the two renames that replace ``step-N``) is put back when ``step-N`` is missing, else deleted."""
    if not root.is_dir():
        return
    for child in root.iterdir():
        if not child.is_dir():
            continue
        if child.name.startswith(_OLD_PREFIX):
            final = root / f"step-{child.name[len(_OLD_PREFIX):]}"
            if not final.exists() and is_complete(child):
                os.replace(child, final)
                continue
        if child.name.startswith((_TMP_PREFIX, _OLD_PREFIX)):
            log.info("removing incomplete checkpoint %s", child)
            shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(accelerator: Any, output_dir: str | Path, step: int, extra_state: dict[str, Any] | None = None,
                    keep_last: int = 2) -> Path:
    """Save a resumable checkpoint of ``step`` and keep only the newest ``keep_last``; returns its folder.

    Every process must call this (``accelerator.save_state`` gathers from all of them); only the main
    process writes ``trainer_state.json``, renames and prunes. ``extra_state`` must be JSON-serialisable
    and the same on every process (the main process's copy is written).
    """
    if keep_last < 1:
        raise ConfigError(f"checkpoint.keep_last={keep_last} must be >= 1")
    root = Path(output_dir) / CHECKPOINTS
    tmp = root / f"{_TMP_PREFIX}{step}"
    final = root / f"step-{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(root)
    accelerator.wait_for_everyone()  # nobody writes into tmp before the leftovers are gone

    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank's files (its RNG state at least) are in tmp

    if accelerator.is_main_process:
        state = {
            "schema_version": SCHEMA_VERSION,
            "step": int(step),
            "num_processes": int(accelerator.num_processes),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "extra_state": extra_state or {},
        }
        marker = tmp / MARKER
        marker.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        if final.exists():  # the same step saved again (e.g. after a resume): swap, never delete first
            old = root / f"{_OLD_PREFIX}{step}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
        for _, path in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(path, ignore_errors=True)
        log.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()  # nobody returns (or resumes) before the rename
    return final


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the complete-looking checkpoint at ``path`` cannot be restored, or ``None`` when it looks intact.

    Cheap checks that catch what a full disk, a copy cut short or a bad sync leave behind, without loading
    any tensor: ``trainer_state.json`` parses; every safetensors file is as long as its header says; every
    torch-saved file (``*.bin``, ``*.pkl``, zip archives) has its central directory; a model weight file is
    there, and one RNG state file per saving process."""
    path = Path(path)
    marker = path / MARKER
    try:
        state = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {MARKER}"
    except (OSError, ValueError) as exc:
        return f"{MARKER} is not valid JSON ({exc})"
    if not isinstance(state, dict) or "step" not in state:
        return f"{MARKER} has no step"
    files = sorted(p for p in path.iterdir() if p.is_file())
    if not any(p.name.startswith(("model", "pytorch_model")) and p.suffix in (".safetensors", ".bin") for p in files):
        return "no model weights (model*.safetensors)"
    processes = state.get("num_processes") or 1
    missing = [f"random_states_{i}.pkl" for i in range(int(processes)) if not (path / f"random_states_{i}.pkl").is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    for file in files:
        if file.suffix == ".safetensors":
            problem = safetensors_problem(file)
            if problem:
                return problem
        elif file.suffix in (".bin", ".pkl", ".pt") and file.stat().st_size >= 4:
            with file.open("rb") as handle:
                is_zip = handle.read(4) == b"PK\x03\x04"  # torch.save's format; older pickles are not checked
            if is_zip:
                try:
                    with zipfile.ZipFile(file) as archive:
                        archive.infolist()
                except (zipfile.BadZipFile, OSError) as exc:
                    return f"{file.name} is truncated or corrupt ({exc})"
        elif file.stat().st_size == 0 and file.suffix in (".bin", ".pkl", ".pt"):
            return f"{file.name} is empty"
    return None


def find_checkpoint(output_dir: str | Path, resume: str) -> Path | None:
    """The checkpoint to resume from, or ``None`` for a fresh run.

    ``resume`` is ``""`` (fresh), ``"latest"`` (the newest *intact* complete checkpoint in ``output_dir``:
    a truncated or corrupt newer one is skipped with a warning naming it and why; ``None`` when there is
    none yet, so a preemptible job can always pass ``latest``), or a checkpoint folder (absolute, relative
    to the working directory, or a name inside ``output_dir/checkpoints``), which must be intact.
    """
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        for _, candidate in reversed(found):
            problem = checkpoint_problem(candidate)
            if problem is None:
                return candidate
            log.warning("skipping checkpoint %s: %s; trying the one before it", candidate, problem)
        if found:
            raise ConfigError(f"checkpoint.resume='latest': no intact checkpoint in "
                              f"{str(Path(output_dir) / CHECKPOINTS)!r} (every one is damaged; see the warnings "
                              "above): start a fresh run with checkpoint.overwrite=true and no checkpoint.resume")
        return None
    path = Path(resume)
    if not path.exists() and (Path(output_dir) / CHECKPOINTS / resume).exists():
        path = Path(output_dir) / CHECKPOINTS / resume
    complete = [p.name for _, p in list_checkpoints(output_dir)]
    available = f"complete checkpoints in {str(Path(output_dir) / CHECKPOINTS)!r}: {complete or 'none'}"
    if not path.is_dir():
        raise ConfigError(f"checkpoint.resume={resume!r} is not a folder: give 'latest' or a checkpoint folder "
                          f"({available})")
    if not is_complete(path):
        if (path / CHECKPOINTS).is_dir():
            raise ConfigError(f"checkpoint.resume={resume!r} is a run folder, not a checkpoint: give "
                              f"'latest' with checkpoint.output_dir={str(path)!r}, or one of its checkpoints")
        raise ConfigError(f"checkpoint.resume={resume!r} is incomplete (no {MARKER}: it was killed while being "
                          f"written); give 'latest' or an earlier checkpoint ({available})")
    problem = checkpoint_problem(path)
    if problem:
        raise ConfigError(f"checkpoint.resume={resume!r} is damaged: {problem}; give 'latest' (the newest intact "
                          f"one) or an earlier checkpoint ({available})")
    return path


def read_trainer_state(path: str | Path) -> dict[str, Any]:
    """A checkpoint's ``trainer_state.json``, flattened: the ``extra_state`` keys the loop saved (data
    position, losses, ...) at the top level, beside ``step``, ``num_processes``, ``saved_at`` and
    ``schema_version`` (which win over an ``extra_state`` key of the same name). The file itself keeps
    ``extra_state`` nested."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        raise ConfigError(f"{str(path)!r} is not a complete checkpoint (no {MARKER}); give 'latest' or "
                          "another checkpoint folder")
    state = read_versioned(marker, "trainer state", SCHEMA_VERSION,
                           fix="the checkpoint is damaged or from another abcgen version; give 'latest' or an "
                               "earlier checkpoint, or resume with the abcgen version that wrote it")
    meta = {k: v for k, v in state.items() if k != "extra_state"}
    return {**state.get("extra_state", {}), **meta}


def load_checkpoint(accelerator: Any, path: str | Path) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` saved into the prepared objects; returns the trainer state
    (flat, as ``read_trainer_state``: ``state["step"]`` and the ``extra_state`` keys, e.g. ``state["epoch"]``).

    Call after ``accelerator.prepare`` (and after ``register_for_checkpointing``), on every process. The
    number of processes must match the saving run: each rank restores its own RNG state, and accelerate
    itself would skip a missing one silently (it only logs "Could not load random states").
    """
    path = Path(path)
    state = read_trainer_state(path)
    saved = state.get("num_processes")
    rng_file = path / f"random_states_{accelerator.process_index}.pkl"
    if saved is not None and saved != accelerator.num_processes:
        raise ConfigError(f"checkpoint {str(path)!r} was saved by {saved} processes but this run has "
                          f"{accelerator.num_processes}: launch with --num_processes {saved} to resume "
                          "exactly (the RNG and data order are per process)")
    if not rng_file.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} has no {rng_file.name}: it cannot restore this process's "
                          "random state; resume with the process count that saved it")
    accelerator.load_state(str(path))
    log.info("resumed from %s (step %s)", path, state.get("step"))
    return state
