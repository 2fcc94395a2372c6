"""One reader and one writer for abcgen's versioned JSON files (control vocabulary, unit spec, tokenizer
metadata, model identity, trainer state, evaluation report, run identity).

Each such file is a JSON object with a ``schema_version`` (and, when written here, a ``kind`` naming what it
is). ``read_versioned`` checks, before any caller looks inside, everything a user can get wrong: the file is
missing, is not JSON, is not an object, is another kind of abcgen file, or has a schema this abcgen cannot
read (a newer one: upgrade abcgen; an older one: the caller's ``fix``). Each is one ``ConfigError`` line
naming the file and the fix. ``write_versioned`` writes to a temporary sibling and renames, so a reader
never sees half a file and a failed write leaves the previous one in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from abcgen.atomic import write_text_atomic
from abcgen.errors import ConfigError

__all__ = ["read_versioned", "write_versioned"]


def _versions(supported: int | Collection[int]) -> list[int]:
    return sorted({supported} if isinstance(supported, int) else set(supported))


def read_versioned(path: str | Path, kind: str, supported: int | Collection[int], *, fix: str = "",
                   unversioned: int | None = None) -> dict[str, Any]:
    """The JSON object in ``path`` (``schema_version`` and ``kind`` included), checked.

    ``kind`` names the file in messages ("control vocabulary") and must match a ``kind`` the file states;
    ``supported``: the schema version(s) this abcgen reads; ``fix``: how to get a good file ("rebuild it
    with `abcgen tokenizer build`"); ``unversioned``: the version a file without ``schema_version`` is read
    as (files written before it had one), ``None`` = such a file is refused.
    """
    path = Path(path)
    name = f"{kind} file {str(path)!r}"
    fix = fix or f"give a {kind} file written by abcgen"
    if not path.is_file():
        raise ConfigError(f"{name} does not exist: {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): "
                          f"{fix}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name} cannot be read ({exc.__class__.__name__}: {exc}): {fix}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{name} holds a JSON {type(data).__name__}, not an object: {fix}")
    stated = data.get("kind", kind)
    if stated != kind:
        raise ConfigError(f"{name} is a {stated} file, not a {kind} file: give the {kind} file ({fix})")
    versions = _versions(supported)
    version = data.get("schema_version", unversioned)
    if version in versions:
        return data
    readable = ", ".join(map(str, versions))
    if isinstance(version, int) and not isinstance(version, bool) and version > versions[-1]:
        raise ConfigError(f"{name} has schema_version {version}, newer than this abcgen reads ({readable}): "
                          "upgrade abcgen (pip install -U abcgen), or use the version that wrote it")
    shown = "no schema_version" if version is None else f"schema_version {version!r}"
    raise ConfigError(f"{name} has {shown}; this abcgen reads {readable}: {fix}")


def write_versioned(path: str | Path, kind: str, version: int, payload: Mapping[str, Any], *,
                    indent: int | None = 1, sort_keys: bool = False, default: Callable[[Any], Any] | None = None
                    ) -> Path:
    """Write ``{"schema_version": version, "kind": kind, **payload}`` to ``path`` atomically; returns it.

    ``default`` is ``json.dumps``'s (e.g. ``str`` for paths). ``payload`` keys ``schema_version``/``kind``
    are a caller's bug (they would silently win or lose), so they are refused."""
    clash = sorted({"schema_version", "kind"} & set(payload))
    if clash:
        raise ValueError(f"payload for {str(path)!r} must not hold {clash}: write_versioned sets them")
    path = Path(path)
    text = json.dumps({"schema_version": version, "kind": kind, **payload}, indent=indent, sort_keys=sort_keys,
                      ensure_ascii=False, default=default) + "\n"
    return write_text_atomic(path, text)
