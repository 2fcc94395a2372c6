"""Shared fixtures. Tests run offline, single-threaded, on real tunes of music21's embedded corpus."""

from __future__ import annotations

import os

# Before torch is imported anywhere: one thread (a busy second core makes 2-thread torch ~40x slower),
# and no network (nothing can be downloaded; tests build tiny models locally).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from abcgen.corpus.sources import read_text, resolve_sources  # noqa: E402
from abcgen.notation.piece import Piece, read_pieces  # noqa: E402
from abcgen.notation.tune import split_tunes  # noqa: E402


def _collection_tunes(name: str, limit: int) -> list[str]:
    texts: list[str] = []
    for source_file in resolve_sources([f"music21:{name}"]):
        text, _ = read_text(source_file.path)
        if text is None:
            continue
        texts += [t.text for t in split_tunes(text)]
        if len(texts) >= limit:
            break
    return texts[:limit]


@pytest.fixture(scope="session")
def real_tunes() -> list[str]:
    """A fixed sample of raw tunes: 150 each from O'Neill's, Ryan's Mammoth and Essen, 60 from Aird's."""
    return (_collection_tunes("oneills1850", 150) + _collection_tunes("ryansMammoth", 150)
            + _collection_tunes("essenFolksong", 150) + _collection_tunes("airdsAirs", 60))


@pytest.fixture(scope="session")
def real_tune_pieces(real_tunes: list[str]) -> list[Piece]:
    """``real_tunes`` read for evaluation (``read_pieces``: named ``#0``, ``#1``, ...), once per test process
    (~1 s) for the metric and novelty tests, which only read them."""
    return read_pieces(real_tunes)
