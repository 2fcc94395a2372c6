"""Where tunes come from: files, folders and the collections bundled with music21.

A source string is a path to a file, a path to a folder (walked recursively, symlinks to folders not
followed, so a symlink loop cannot hang the build), or ``music21:NAME`` for the embedded corpus. Reading
never raises: a file that cannot be read becomes a ``SourceFile`` with ``error`` set, which the builder
reports.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from abcgen.errors import ConfigError

log = logging.getLogger(__name__)

ABC_SUFFIXES = {".abc"}
SCORE_SUFFIXES = {".mxl", ".musicxml", ".xml", ".mid", ".midi", ".krn"}
SUFFIXES = ABC_SUFFIXES | SCORE_SUFFIXES
# Larger files are refused rather than read into memory whole; 64 MB is ~200,000 folk tunes.
MAX_FILE_BYTES = 64 * 1024 * 1024

# music21's bundled ABC collections, with the region their tunes come from when O: is absent.
MUSIC21_ABC = {
    "essenFolksong": "",
    "oneills1850": "ireland",
    "airdsAirs": "scotland",
    "ryansMammoth": "",
    "miscFolk": "",
}
MUSIC21_NAMES = [*MUSIC21_ABC, "bach"]


@dataclass(frozen=True)
class SourceFile:
    """One file to read: its path, the source string it came from and a default origin label."""

    path: Path
    source: str
    default_origin: str = ""
    composer: str = ""

    @property
    def kind(self) -> str:
        return "abc" if self.path.suffix.lower() in ABC_SUFFIXES else "score"


def music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def _walk(folder: Path, source: str, default_origin: str = "", composer: str = "") -> list[SourceFile]:
    files = []
    # followlinks=False: a symlinked folder is not entered, so loops are impossible.
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.suffix.lower() in SUFFIXES:
                files.append(SourceFile(path, source, default_origin, composer))
    return files


def resolve_sources(sources: list[str]) -> list[SourceFile]:
    """Expand source strings into files, in a deterministic order. Raises ``ConfigError`` for a source
    that names nothing (a missing path or an unknown music21 collection)."""
    files: list[SourceFile] = []
    for source in sources:
        if source.startswith("music21:"):
            name = source.split(":", 1)[1]
            names = MUSIC21_NAMES if name == "all" else [name]
            for each in names:
                if each not in MUSIC21_NAMES:
                    raise ConfigError(f"unknown music21 collection {each!r}; valid: {', '.join(MUSIC21_NAMES)}, all")
                corpus = music21_corpus_dir()
                if each == "bach":
                    files += [f for f in _walk(corpus / "bach", "music21:bach", "germany", "j.s. bach")
                              if f.path.suffix.lower() in {".mxl", ".musicxml", ".xml"}]
                else:
                    files += [f for f in _walk(corpus / each, f"music21:{each}", MUSIC21_ABC[each])
                              if f.path.suffix.lower() in ABC_SUFFIXES]
            continue
        path = Path(source)
        if path.is_dir():
            files += _walk(path, source)
        elif path.is_file():
            files.append(SourceFile(path, source))
        else:
            raise ConfigError(f"source {source!r} is neither a file, a folder nor music21:NAME "
                              f"(collections: {', '.join(MUSIC21_NAMES)}, all)")
    return files


def read_text(path: Path) -> tuple[str | None, str]:
    """The text of an ABC file and the encoding used, or ``(None, reason)``.

    UTF-8 first; Latin-1 (common in folk collections) when UTF-8 fails. Files with NUL bytes are
    binary; empty files and files over ``MAX_FILE_BYTES`` are refused with a reason."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None, "empty file"
        if size > MAX_FILE_BYTES:
            return None, f"file is {size / 1e6:.0f} MB, more than the {MAX_FILE_BYTES // 2**20} MiB limit"
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read file: {exc.strerror or exc}"
    if b"\x00" in data[:8192]:
        return None, "binary file (NUL bytes), not ABC text"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"
