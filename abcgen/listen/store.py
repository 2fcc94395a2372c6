"""The answers of a listening test in SQLite: every answer kept, safe with many raters at once.

* **Insert-only.** Triggers refuse ``UPDATE`` and ``DELETE`` on both tables: an answer given twice (a
  double click, a resubmitted form) is a second row, and the analysis reads the first.
* **Concurrency.** WAL journal (readers never block the writer), one connection per request (a
  connection is never shared between threads), a busy timeout instead of "database is locked", and
  each submitted trial written in one transaction (``BEGIN IMMEDIATE``), so a trial is stored whole or
  not at all.
* **Resumable.** A rater's trial order is stored when they start; their next trial is the first one in
  that order without an answer, so a reload, a closed tab or a server restart continues where they were.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

DB_FILE = "answers.sqlite"
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    rater_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    plays_instrument INTEGER NOT NULL,      -- 1 yes, 0 no
    years INTEGER NOT NULL,                 -- years of playing
    trial_order TEXT NOT NULL,              -- JSON list of trial ids
    user_agent TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    answer_id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    trial_id TEXT NOT NULL,
    question TEXT NOT NULL,
    value TEXT NOT NULL,
    submitted REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_rater ON answers(rater_id, trial_id);
CREATE TRIGGER IF NOT EXISTS answers_no_update BEFORE UPDATE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are insert-only'); END;
CREATE TRIGGER IF NOT EXISTS answers_no_delete BEFORE DELETE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are insert-only'); END;
CREATE TRIGGER IF NOT EXISTS raters_no_update BEFORE UPDATE ON raters
    BEGIN SELECT RAISE(ABORT, 'raters are insert-only'); END;
CREATE TRIGGER IF NOT EXISTS raters_no_delete BEFORE DELETE ON raters
    BEGIN SELECT RAISE(ABORT, 'raters are insert-only'); END;
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """A new connection (one per request or thread) with the busy timeout; autocommit mode, so every
    transaction is an explicit ``BEGIN``."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextlib.contextmanager
def connection(path: str | Path) -> Iterator[sqlite3.Connection]:
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


def init_db(path: str | Path) -> Path:
    """Create the tables (if new) and switch the file to WAL; safe to call on an existing database."""
    path = Path(path)
    with connection(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_SCHEMA)
    return path


def new_rater(path: str | Path, trial_ids: Sequence[str], *, plays_instrument: bool, years: int,
              user_agent: str = "", seed: int | None = None) -> str:
    """Register a rater with an order of the trials of their own; return their id (unguessable)."""
    rater_id = secrets.token_urlsafe(12)
    order = list(trial_ids)
    random.Random(seed if seed is not None else rater_id).shuffle(order)
    with connection(path) as conn:
        conn.execute("INSERT INTO raters VALUES (?, ?, ?, ?, ?, ?)",
                     (rater_id, time.time(), int(bool(plays_instrument)), int(years), json.dumps(order),
                      user_agent[:300]))
    return rater_id


def rater(path: str | Path, rater_id: str) -> dict[str, Any] | None:
    with connection(path) as conn:
        row = conn.execute("SELECT rater_id, created, plays_instrument, years, trial_order FROM raters "
                           "WHERE rater_id = ?", (rater_id,)).fetchone()
    if row is None:
        return None
    return {"rater_id": row[0], "created": row[1], "plays_instrument": bool(row[2]), "years": row[3],
            "trial_order": json.loads(row[4])}


def answered_trials(path: str | Path, rater_id: str) -> set[str]:
    with connection(path) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT trial_id FROM answers WHERE rater_id = ?", (rater_id,))}


def progress(path: str | Path, rater_id: str) -> tuple[str | None, int, int]:
    """(next trial id or None when done, trials answered, trials in total) for a rater."""
    info = rater(path, rater_id)
    if info is None:
        raise KeyError(rater_id)
    done = answered_trials(path, rater_id)
    order = info["trial_order"]
    upcoming = [t for t in order if t not in done]
    return (upcoming[0] if upcoming else None), len(order) - len(upcoming), len(order)


def add_answers(path: str | Path, rater_id: str, trial_id: str, values: dict[str, str]) -> int:
    """Store one trial's answers (question -> value) in one transaction; return the rows written."""
    now = time.time()
    with connection(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO answers (rater_id, trial_id, question, value, submitted) "
                             "VALUES (?, ?, ?, ?, ?)",
                             [(rater_id, trial_id, q, str(v), now) for q, v in values.items()])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return len(values)


def read_all(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(raters, answers) as lists of dicts, answers in the order they were stored."""
    with connection(path) as conn:
        conn.row_factory = sqlite3.Row
        raters = [dict(r) for r in conn.execute("SELECT * FROM raters ORDER BY created")]
        answers = [dict(r) for r in conn.execute("SELECT * FROM answers ORDER BY answer_id")]
    for r in raters:
        r["trial_order"] = json.loads(r["trial_order"])
        r["plays_instrument"] = bool(r["plays_instrument"])
    return raters, answers


def count_answers(path: str | Path) -> int:
    with connection(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
