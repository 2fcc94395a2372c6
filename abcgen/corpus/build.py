"""``abcgen data build``: sources -> normalised, checked, labelled, de-duplicated, split corpus.

Order of work (each step's counts go to the report; tunes in = accepted + rejected + duplicates):

1. resolve sources into files; read ABC files (UTF-8, else Latin-1) and split them into tunes; score
   files (MusicXML, MIDI, kern) are one tune each, converted to ABC in the workers;
2. per tune, in a process pool: normalise, lex, check bars / repeats / truncation, derive labels and
   the transposition-invariant melody fingerprint (optionally the REMI text and its round trip,
   ``abcgen.notation.remi.remi_round_trip``);
3. de-duplicate on the fingerprint, keeping the first occurrence in source order -- BEFORE splitting,
   so a tune and its transposition can never sit in two splits;
4. split deterministically by a hash of the fingerprint (stable when the corpus grows);
5. augment the train split by transposition (optional);
6. save the ``DatasetDict``, ``report.json`` and ``control_vocabulary.json``.

With ``remi``, the report's ``remi`` section counts every accepted tune once: tunes = exact + not_exact
(by reason: what REMI's grid and ranges lose) + failed (by reason: no REMI text, the ``remi`` column is
""); ``remi_not_exact`` and ``remi_failures`` list them. Transposed train rows get REMI text too, counted
the same way in ``remi.transpositions``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from abcgen.atomic import atomic_output_dir, check_apart, check_output_dir
from abcgen.controls import DEFAULT_MIN_COUNT, ControlVocabulary, conditions
from abcgen.corpus.labels import header_labels
from abcgen.corpus.sources import SUFFIXES, SourceFile, read_text, resolve_sources
from abcgen.errors import AbcgenError, ConfigError
from abcgen.notation.bars import events_by_voice
from abcgen.notation.checks import check_tune
from abcgen.notation.musicxml import musicxml_to_abc
from abcgen.notation.pitches import melody_fingerprint
from abcgen.notation.remi import remi_round_trip
from abcgen.notation.structure import derive_form
from abcgen.notation.transpose import transpose_tune
from abcgen.notation.tune import Tune, normalise_tune, split_tunes

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
BAR_POLICIES = ("reject", "flag", "off")
INT_COLUMNS = ("tune_index", "num_bars", "tempo_bpm", "num_voices", "bar_problems", "transposition")
COLUMNS = (
    "abc", "remi", "source", "file", "tune_index", "title", "key", "meter", "unit_length", "rhythm",
    "origin", "composer", "form", "num_bars", "tempo", "tempo_bpm", "num_voices", "bar_problems",
    "transposition", "fingerprint",
)


def corpus_columns() -> tuple[str, ...]:
    """``COLUMNS`` plus the column of every registered condition the builder does not fill itself
    (``Condition.derive``, a string column)."""
    return COLUMNS + tuple(c.corpus_column for c in conditions() if c.corpus_column not in COLUMNS)


def corpus_features():  # noqa: ANN201 - datasets.Features, imported lazily
    """One explicit schema for every split, so an empty split saves and loads like a full one."""
    from datasets import Features, Value

    return Features({name: Value("int64" if name in INT_COLUMNS else "string") for name in corpus_columns()})


@dataclass
class BuildConfig:
    """Settings of one corpus build (the CLI flags of ``abcgen data build``)."""

    sources: list[str]
    out: Path
    validation_fraction: float = 0.05  # share of de-duplicated tunes in validation
    test_fraction: float = 0.05  # share in test; the rest is train
    split_seed: int = 0  # salt of the split hash: change it for a different, still deterministic split
    remi: bool = False  # also write REMI text (ABC -> abc2midi -> miditok) and check its round trip; ~30 ms a tune
    transpose_augment: tuple[int, ...] = ()  # semitone shifts added to the train split only
    bar_check: str = "reject"  # reject: a tune with a bad bar is rejected; flag: kept, counted; off
    workers: int = 0  # processes; 0 = all cores
    min_label_count: int = DEFAULT_MIN_COUNT  # rarer control values become "other" in the vocabulary

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.bar_check not in BAR_POLICIES:
            raise ConfigError(f"bar_check={self.bar_check!r}; choose one of {', '.join(BAR_POLICIES)}")
        if not 0 <= self.validation_fraction < 1 or not 0 <= self.test_fraction < 1 or \
                self.validation_fraction + self.test_fraction >= 1:
            raise ConfigError(f"validation_fraction={self.validation_fraction} and test_fraction={self.test_fraction} "
                              "must be in [0, 1) and leave room for train")
        if any(not -11 <= s <= 11 or s == 0 for s in self.transpose_augment):
            raise ConfigError(f"transpose_augment={self.transpose_augment}: shifts must be non-zero, within -11..11")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers={self.workers!r}: give a number of processes, 0 for all cores")
        if isinstance(self.min_label_count, bool) or not isinstance(self.min_label_count, int) or self.min_label_count < 1:
            raise ConfigError(f"min_label_count={self.min_label_count!r}: give a whole number of at least 1")


@dataclass(frozen=True)
class Job:
    """One tune to process: ABC text (or a score file to convert), and where it came from."""

    source: str
    file: str
    tune_index: int
    text: str | None
    default_origin: str = ""
    composer: str = ""


@dataclass
class Outcome:
    job_index: int
    row: dict[str, Any] | None = None
    reason: str = ""
    title: str = ""
    augmented: list[dict[str, Any]] = field(default_factory=list)
    remi_error: str = ""  # no REMI text: why
    remi_loss: str = ""  # REMI text that does not give the notes back exactly: the reason kind
    # Each transposition's REMI: ("exact", ""), ("not_exact", reason kind) or ("failed", error).
    augmented_remi: list[tuple[str, str]] = field(default_factory=list)


def split_of(fingerprint: str, config: BuildConfig) -> str:
    """Deterministic split from the fingerprint: the same tune always lands in the same split."""
    digest = hashlib.blake2b(f"{config.split_seed}:{fingerprint}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    if u < config.test_fraction:
        return "test"
    if u < config.test_fraction + config.validation_fraction:
        return "validation"
    return "train"


def _score_to_abc(path: Path) -> str:
    """MusicXML directly; MIDI and kern through music21 -> MusicXML."""
    if path.suffix.lower() in {".mxl", ".musicxml", ".xml"}:
        return musicxml_to_abc(path)
    import music21

    score = music21.converter.parse(str(path))
    # music21 fills missing metadata with "Music21 Fragment" / "Music21": use the file name instead.
    if score.metadata is None:
        score.metadata = music21.metadata.Metadata()
    if not score.metadata.title or score.metadata.title == "Music21 Fragment":
        score.metadata.title = path.stem
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "score.musicxml"
        score.write("musicxml", fp=str(target))
        abc = musicxml_to_abc(target)
    return re.sub(r"^C:Music21\n", "", abc, flags=re.MULTILINE)


def tune_row(tune: Tune, job: Job, bar_check: str) -> tuple[dict[str, Any] | None, str]:
    """The corpus row of a normalised tune, or ``(None, reason)`` when it is broken."""
    events = tune.events()
    check = check_tune(tune)
    report = check.report
    if check.structural_problems:
        return None, check.structural_problems[0]
    if report.problems and bar_check == "reject":
        extra = f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        return None, f"bar length: {report.problems[0]}{extra}"
    labels = header_labels(tune, default_origin=job.default_origin)
    if job.composer and not labels["composer"]:
        labels["composer"] = job.composer
    row: dict[str, Any] = {
        "abc": tune.to_abc(),
        "remi": "",
        "source": job.source,
        "file": job.file,
        "tune_index": job.tune_index,
        **labels,
        "form": derive_form(events, tune.get("P")),
        "num_bars": report.num_bars,
        "num_voices": len(events_by_voice(events)),
        "bar_problems": len(report.problems) if bar_check != "off" else 0,
        "transposition": 0,
        "fingerprint": melody_fingerprint(events, tune.key, tune.unit_length),
    }
    for condition in conditions():  # registered conditions with a column of their own
        if condition.derive is not None and condition.corpus_column not in COLUMNS:
            value = condition.derive(tune)
            row[condition.corpus_column] = "" if value is None else str(value)
    return row, ""


_TITLE_RE = re.compile(r"^T:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
# Where a rejection reason says where (appended by AbcParseError): "(tune 'X:1 ...', bar 3, line 1, column 8)".
_WHERE_RE = re.compile(r" \((?:tune|bar|line|column) .*\)$", re.DOTALL)


def reason_kind(reason: str) -> str:
    """The kind of a rejection, for the summary: the reason without its location and details.

    ``"bar length: bar 3 (...): ..."`` -> ``"bar length"``; ``"stray ':' (tune ..., bar 2)"`` -> ``"stray ':'"``
    (a colon inside the quoted character is not a separator); ``"the header has no K: field (K: must end
    the header) (tune ...)"`` keeps its ``K:``: a field letter before a colon is part of the text."""
    text = " ".join(_WHERE_RE.sub("", reason.strip()).split())  # one line: a reason may quote "[A2f\n2]"
    for m in re.finditer(r":\s", text):
        head = text[: m.start()]
        if head.count("'") % 2 == 0 and head.count('"') % 2 == 0 and not re.search(r"(?:^|[\s(\[])[A-Za-z]$", head):
            return head.strip()
    return text


def _add_remi(row: dict[str, Any]) -> tuple[str, str]:
    """Fill ``row["remi"]`` and return (why its notes do not come back exactly, why there is no text): both ""
    for an exact round trip. Never raises: a failure leaves ``remi`` "" and is reported."""
    try:
        trip = remi_round_trip(row["abc"])
    except Exception as exc:  # AbcgenError for what REMI cannot hold; anything else is a converter's bug
        return "", str(exc) if isinstance(exc, AbcgenError) else f"{type(exc).__name__}: {exc}"
    row["remi"] = trip.remi
    return trip.reason, ""


def process_job(args: tuple[int, Job, BuildConfig]) -> Outcome:
    """Worker: everything that happens to one tune. Never raises for bad input."""
    index, job, config = args
    text = job.text
    try:
        if text is None:
            text = _score_to_abc(Path(job.file))
        tune = normalise_tune(text)
        row, reason = tune_row(tune, job, config.bar_check)
    except Exception as exc:  # AbcgenError for bad input; anything else is a converter's bug: report it
        title = _TITLE_RE.search(text[:4096]) if text else None
        message = str(exc) if isinstance(exc, AbcgenError) else f"{type(exc).__name__}: {exc}"
        return Outcome(index, reason=message, title=title.group(1) if title else "")
    if row is None:
        return Outcome(index, reason=reason, title=tune.title)
    outcome = Outcome(index, row=row, title=tune.title)
    if config.remi:
        outcome.remi_loss, outcome.remi_error = _add_remi(row)
    if config.transpose_augment and split_of(row["fingerprint"], config) == "train":
        for shift in config.transpose_augment:
            try:
                moved = normalise_tune(transpose_tune(tune, shift).to_abc())
                extra, _ = tune_row(moved, job, "off")
            except AbcgenError as exc:
                log.debug("augmentation %+d of %s failed: %s", shift, job.file, exc)
                continue
            if extra:
                extra["transposition"] = shift
                extra["fingerprint"] = row["fingerprint"]
                if config.remi:
                    loss, error = _add_remi(extra)
                    outcome.augmented_remi.append(("failed", error) if error else
                                                  ("not_exact", loss) if loss else ("exact", ""))
                outcome.augmented.append(extra)
    return outcome


def collect_jobs(files: list[SourceFile]) -> tuple[list[Job], list[dict[str, str]]]:
    """Read and split the ABC files; score files become one job each. Returns jobs and file rejections."""
    jobs: list[Job] = []
    rejected_files: list[dict[str, str]] = []
    for f in files:
        if f.kind == "score":
            jobs.append(Job(f.source, str(f.path), 0, None, f.default_origin, f.composer))
            continue
        text, info = read_text(f.path)
        if text is None:
            rejected_files.append({"file": str(f.path), "source": f.source, "reason": info})
            continue
        tunes = split_tunes(text)
        if not tunes:
            rejected_files.append({"file": str(f.path), "source": f.source,
                                   "reason": "no tunes: no X: line and no K: line"})
            continue
        jobs += [Job(f.source, str(f.path), t.index, t.text, f.default_origin, f.composer) for t in tunes]
    return jobs, rejected_files


def _no_tunes_error(config: BuildConfig, files: list[SourceFile], rejected_files: list[dict[str, str]]) -> ConfigError:
    sources = ", ".join(repr(s) for s in config.sources)
    if not files:
        return ConfigError(f"--source {sources} holds no tune files (suffixes {', '.join(sorted(SUFFIXES))}): "
                           "give a folder or file with ABC tunes, or music21:NAME; nothing was written")
    first = rejected_files[0] if rejected_files else {"file": "?", "reason": "?"}
    return ConfigError(f"--source {sources}: none of its {len(files)} files holds a tune (first: {first['file']}: "
                       f"{first['reason']}); give ABC files with X:/K: tunes; nothing was written")


def build_corpus(config: BuildConfig, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Build the corpus described by ``config`` into ``config.out`` and return the report.

    The corpus is written into a temporary sibling of ``config.out`` and renamed into place: a failure
    leaves the previous corpus as it was. A used ``config.out`` is refused unless ``overwrite``; sources
    without a single tune are an error (``ConfigError``), both checked before any tune is processed."""
    import datasets
    from datasets import Dataset, DatasetDict

    if not progress:
        datasets.disable_progress_bars()

    started = time.perf_counter()
    files = resolve_sources(config.sources)
    check_output_dir(config.out, overwrite=overwrite)
    check_apart(config.out, [("--source", s) for s in config.sources if not s.startswith("music21:")])
    jobs, rejected_files = collect_jobs(files)
    if not jobs:
        raise _no_tunes_error(config, files, rejected_files)
    log.info("%d files, %d tunes to process", len(files), len(jobs))
    outcomes = _process_jobs(jobs, config, progress=progress)
    placed = _sort_outcomes(jobs, outcomes, config)
    rows, rejected, duplicates = placed.rows, placed.rejected, placed.duplicates

    accepted = sum(1 for o in outcomes if o.row is not None) - len(duplicates)
    if not accepted:
        raise _all_rejected_error(config, len(jobs), rejected)
    features = corpus_features()
    dataset = DatasetDict({
        name: Dataset.from_list(split_rows, features=features) if split_rows
        else Dataset.from_dict({name: [] for name in corpus_columns()}, features=features)
        for name, split_rows in rows.items()
    })
    vocabulary = ControlVocabulary.from_rows(rows["train"], min_count=config.min_label_count)
    reason_counts = Counter(reason_kind(r["reason"]) for r in rejected)
    report = {
        "schema_version": SCHEMA_VERSION,
        "config": {**asdict(config), "out": str(config.out)},
        "files": {"in": len(files), "rejected": len(rejected_files), "rejected_files": rejected_files},
        "tunes": {
            "in": len(jobs),
            "accepted": accepted,
            "rejected": len(rejected),
            "duplicates": len(duplicates),
            "augmented": sum(1 for r in rows["train"] if r["transposition"]),
        },
        "splits": {name: len(split_rows) for name, split_rows in rows.items()},
        "rejection_reasons": dict(reason_counts.most_common()),
        "rejected": rejected,
        "duplicates": duplicates,
        "remi": _remi_summary(placed) if config.remi else None,
        "remi_not_exact": placed.remi_not_exact,
        "remi_failures": placed.remi_errors,
        "per_source": _per_source(jobs, outcomes, duplicates),
        "labels": _label_counts(rows),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if report["tunes"]["in"] != accepted + len(rejected) + len(duplicates):  # pragma: no cover - invariant
        raise AssertionError("corpus report does not add up: in != accepted + rejected + duplicates")
    remi = report["remi"]
    if remi and (remi["tunes"] != accepted or accepted != remi["exact"] + sum(remi["not_exact"].values())
                 + sum(remi["failed"].values())):  # pragma: no cover - invariant
        raise AssertionError("REMI report does not add up: accepted != exact + not_exact + failed")
    # Everything into a temporary sibling, renamed into place at the end: never half old, half new.
    with atomic_output_dir(config.out, overwrite=overwrite) as tmp:
        # One shard per split: an empty split saved with datasets' default (0 shards) cannot be loaded back.
        dataset.save_to_disk(str(tmp), num_shards=dict.fromkeys(dataset, 1))
        vocabulary.save(tmp)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    return report


def _process_jobs(jobs: list[Job], config: BuildConfig, *, progress: bool) -> list[Outcome]:
    """``process_job`` on every tune, in order, with a progress bar; in worker processes (``config.workers``,
    0 = all cores) when there are more than 200 tunes."""
    from tqdm.auto import tqdm

    workers = config.workers or os.cpu_count() or 1
    work = [(i, job, config) for i, job in enumerate(jobs)]
    outcomes: list[Outcome] = []
    bar = tqdm(total=len(work), desc="tunes", unit="tune", disable=not progress)
    if workers > 1 and len(work) > 200:
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ctx.Pool(workers) as pool:
            for outcome in pool.imap(process_job, work, chunksize=32):
                outcomes.append(outcome)
                bar.update()
    else:
        for item in work:
            outcomes.append(process_job(item))
            bar.update()
    bar.close()
    return outcomes


@dataclass
class _Sorted:
    """The outcomes sorted: accepted rows by split (train with its transpositions), rejections,
    duplicates of an earlier tune, and the accepted tunes' REMI: exact, not exact (why), no text (why)."""

    rows: dict[str, list[dict[str, Any]]]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    remi_errors: list[dict[str, Any]] = field(default_factory=list)
    remi_not_exact: list[dict[str, Any]] = field(default_factory=list)
    remi_exact: int = 0
    transposed_remi: list[tuple[str, str]] = field(default_factory=list)  # see Outcome.augmented_remi


def _sort_outcomes(jobs: list[Job], outcomes: list[Outcome], config: BuildConfig) -> _Sorted:
    """Each outcome to its place: rejected, a duplicate (same fingerprint as an earlier tune, which is
    kept), or a row of the split its fingerprint hashes to."""
    result = _Sorted(rows={name: [] for name in SPLITS})
    seen: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        job = jobs[outcome.job_index]
        where = {"source": job.source, "file": job.file, "tune_index": job.tune_index, "title": outcome.title}
        if outcome.row is None:
            result.rejected.append({**where, "reason": outcome.reason})
            continue
        fp = outcome.row["fingerprint"]
        if fp in seen:
            first = seen[fp]
            result.duplicates.append({**where, "duplicate_of": {"file": first["file"],
                                                                "tune_index": first["tune_index"]}})
            continue
        seen[fp] = outcome.row
        split = split_of(fp, config)
        result.rows[split].append(outcome.row)
        if split == "train":
            result.rows["train"] += outcome.augmented
            result.transposed_remi += outcome.augmented_remi
        if outcome.remi_error:
            result.remi_errors.append({**where, "reason": outcome.remi_error})
        elif outcome.remi_loss:
            result.remi_not_exact.append({**where, "reason": outcome.remi_loss})
        else:
            result.remi_exact += 1
    return result


def _remi_summary(placed: _Sorted) -> dict[str, Any]:
    """The report's ``remi`` section: every accepted tune is exact, not exact (by reason) or failed (by the
    kind of its error); the transposed train rows likewise."""
    not_exact = Counter(r["reason"] for r in placed.remi_not_exact)
    failed = Counter(reason_kind(r["reason"]) for r in placed.remi_errors)
    moved = placed.transposed_remi
    return {
        "tunes": placed.remi_exact + len(placed.remi_not_exact) + len(placed.remi_errors),
        "exact": placed.remi_exact,
        "not_exact": dict(not_exact.most_common()),
        "failed": dict(failed.most_common()),
        "transpositions": {
            "rows": len(moved),
            "exact": sum(1 for status, _ in moved if status == "exact"),
            "not_exact": dict(Counter(reason for status, reason in moved if status == "not_exact").most_common()),
            "failed": dict(Counter(reason_kind(reason) for status, reason in moved if status == "failed").most_common()),
        },
    }


def _all_rejected_error(config: BuildConfig, num_jobs: int, rejected: list[dict[str, Any]]) -> ConfigError:
    kinds = Counter(reason_kind(r["reason"]) for r in rejected).most_common(3)
    return ConfigError(f"--source {', '.join(repr(s) for s in config.sources)}: all {num_jobs} tunes were rejected "
                       f"({'; '.join(f'{k}: {n}' for k, n in kinds)}; first: {rejected[0]['file']} tune "
                       f"{rejected[0]['tune_index']}: {rejected[0]['reason']}); fix the tunes or pass "
                       "--bar-check flag; nothing was written")


def _label_counts(rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """The 25 most common values of each label over every split, transpositions not counted."""
    return {
        name: dict(Counter(r[name] or "(none)" for split_rows in rows.values() for r in split_rows
                           if not r["transposition"]).most_common(25))
        for name in (c.corpus_column for c in conditions() if c.summary)
    }


def _per_source(jobs: list[Job], outcomes: list[Outcome], duplicates: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        source = jobs[outcome.job_index].source
        table.setdefault(source, Counter())["in"] += 1
        table[source]["accepted" if outcome.row is not None else "rejected"] += 1
    for dup in duplicates:
        table[dup["source"]]["accepted"] -= 1
        table[dup["source"]]["duplicates"] += 1
    return {k: {"in": v["in"], "accepted": v["accepted"], "rejected": v["rejected"], "duplicates": v["duplicates"]}
            for k, v in table.items()}


def format_report(report: dict[str, Any]) -> str:
    """The console table of a build report."""
    t = report["tunes"]
    lines = [
        f"{'source':<24} {'in':>7} {'accepted':>9} {'rejected':>9} {'duplicates':>11}",
        *(f"{src:<24} {c['in']:>7} {c['accepted']:>9} {c['rejected']:>9} {c['duplicates']:>11}"
          for src, c in report["per_source"].items()),
        f"{'total':<24} {t['in']:>7} {t['accepted']:>9} {t['rejected']:>9} {t['duplicates']:>11}",
        f"files: {report['files']['in']} read, {report['files']['rejected']} rejected; "
        f"splits: " + ", ".join(f"{k} {v}" for k, v in report["splits"].items())
        + (f" (train includes {t['augmented']} transpositions)" if t["augmented"] else ""),
        "rejections: " + (", ".join(f"{k} {v}" for k, v in list(report["rejection_reasons"].items())[:8]) or "none"),
    ]
    if remi := report.get("remi"):
        lines.append(f"REMI: {remi['exact']} of {remi['tunes']} tunes exact; not exact: "
                     + (", ".join(f"{k} {v}" for k, v in remi["not_exact"].items()) or "none") + "; failed: "
                     + (", ".join(f"{k} {v}" for k, v in remi["failed"].items()) or "none"))
    lines.append(f"built in {report['seconds']} s")
    return "\n".join(lines)


def load_corpus(folder: str | Path):  # noqa: ANN201 - datasets.DatasetDict, imported lazily
    """Load a corpus folder written by ``build_corpus``."""
    from datasets import load_from_disk

    folder = Path(folder)
    if not (folder / "dataset_dict.json").exists():
        raise ConfigError(f"{folder} is not a corpus folder (no dataset_dict.json); build one with "
                          "'abcgen data build --source ... --out DIR'")
    return load_from_disk(str(folder))
