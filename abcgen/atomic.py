"""Outputs written whole or not at all: every command's output folder is built in a temporary sibling and
renamed into place, so a kill midway leaves the previous output intact and nothing half old, half new.

    with atomic_output_dir(out, overwrite=args.overwrite) as tmp:   # refuses a used `out` unless overwrite
        write_everything_into(tmp)
    # `out` now holds the new output; the old one (if any) was swapped out and removed only afterwards

The one place that decides how an output is replaced; used by the corpus builder, the tokenizer build,
``train/finetune.py``'s ``final/``, evaluation reports and the hub folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from abcgen.errors import ConfigError

log = logging.getLogger(__name__)

# Names of the siblings this module creates; only folders with these prefixes are ever removed by it.
_TMP = ".{name}.tmp-{pid}"
_PREVIOUS = ".{name}.previous-{pid}"


def tmp_sibling(path: str | Path) -> Path:
    """The temporary sibling ``path`` is written into before the rename (unique per process)."""
    path = Path(path)
    return path.with_name(_TMP.format(name=path.name, pid=os.getpid()))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary sibling of the file ``path`` and rename it over ``path``: a reader
    sees the old file or the new one, never a part. Returns ``path``."""
    path = Path(path)
    tmp = tmp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def is_used(path: str | Path) -> bool:
    """Whether ``path`` exists and is not an empty folder (an output a user could lose)."""
    path = Path(path)
    if not path.exists():
        return False
    return not path.is_dir() or any(path.iterdir())


def check_output_dir(path: str | Path, *, overwrite: bool, flag: str = "--overwrite") -> Path:
    """Check, before any work, that ``path`` can be written: refuse a used output without ``overwrite``,
    and a parent folder that cannot be created or written. ``flag`` is how the user says "overwrite"."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output {str(path)!r} is a file, not a folder: give a folder path")
    if is_used(path) and not overwrite:
        raise ConfigError(f"output folder {str(path)!r} already holds files: pass {flag} to replace it, "
                          "or choose another folder")
    parent = path.resolve().parent
    probe = parent
    while not probe.exists():  # the first existing ancestor must be writable for the mkdir to work
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the output {str(path)!r}: {str(probe)!r} is not a writable folder")
    try:  # os.access says yes to root everywhere (/proc, read-only mounts): try it for real, before any work
        fd, probe_file = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=probe)
    except OSError as exc:
        raise ConfigError(f"cannot write the output {str(path)!r}: {str(probe)!r} is not a writable folder "
                          f"({exc.strerror or exc}); choose another output path") from None
    os.close(fd)
    os.unlink(probe_file)
    return path


def check_apart(path: str | Path, inputs: Iterable[tuple[str, str | Path | None]], *, flag: str = "--out") -> None:
    """Refuse an output folder that is, or holds, one of the command's inputs (``[("--source", "tunes/")]``):
    replacing it (with ``--overwrite``) would delete the input. Inputs that are not local paths are skipped."""
    out = Path(path).resolve()
    for name, value in inputs:
        if value is None or not Path(value).exists():
            continue
        source = Path(value).resolve()
        if source == out or out in source.parents:
            raise ConfigError(f"{flag} {str(path)!r} is or holds the input {name} {str(value)!r}: replacing it "
                              f"would delete that input; choose another {flag}")


def replace_dir(tmp: str | Path, path: str | Path) -> None:
    """Move the finished folder ``tmp`` to ``path``; an existing ``path`` is swapped out first and removed
    only after the new one is in place (a kill in between leaves either the old or the new folder, plus a
    hidden ``.NAME.previous-PID`` that :func:`remove_leftovers` cleans)."""
    tmp, path = Path(tmp), Path(path)
    previous = path.with_name(_PREVIOUS.format(name=path.name, pid=os.getpid()))
    if path.exists():
        os.replace(path, previous)
    os.replace(tmp, path)
    if previous.exists():
        shutil.rmtree(previous) if previous.is_dir() else previous.unlink()


def _leftover_pid(name: str, prefixes: tuple[str, ...]) -> int | None:
    """The process id in a sibling name this module made (``.NAME.tmp-PID``/``.NAME.previous-PID``), else None:
    a name that merely starts like one (``.NAME.previous-mine``) is the user's and never touched."""
    for prefix in prefixes:
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return int(name[len(prefix):])
    return None


def _alive(pid: int) -> bool:
    """Whether another live process has this id (its temporary folder is in use: leave it alone)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_leftovers(path: str | Path) -> None:
    """Remove siblings of ``path`` that an interrupted :func:`atomic_output_dir` left (only those: the names
    are this module's prefixes followed by the id of a process that is no longer running). If ``path``
    itself is missing but a swapped-out previous copy is there, the kill came between the two renames: put
    the previous copy back instead of deleting it."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return
    tmp_prefix = f".{path.name}.tmp-"
    previous_prefix = f".{path.name}.previous-"
    for child in sorted(parent.iterdir()):
        pid = _leftover_pid(child.name, (tmp_prefix, previous_prefix))
        if pid is None or _alive(pid):
            continue
        if child.name.startswith(previous_prefix) and not path.exists():
            log.warning("restoring %s from the interrupted replacement %s", path, child.name)
            os.replace(child, path)
        else:
            log.info("removing %s left by an interrupted write", child)
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output_dir(path: str | Path, *, overwrite: bool = False, flag: str = "--overwrite") -> Iterator[Path]:
    """Yield an empty temporary sibling of ``path`` to write into; on success it replaces ``path``.

    A used ``path`` is refused unless ``overwrite`` (the message names ``flag``). On an exception the
    temporary folder is removed and ``path`` is left exactly as it was."""
    path = check_output_dir(path, overwrite=overwrite, flag=flag)
    remove_leftovers(path)
    tmp = tmp_sibling(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, path)
