"""``abcgen data build``: sources -> normalised, checked, labelled, de-duplicated, split corpus.

Order of work (each step's counts go to the report; tunes in = accepted + rejected + duplicates):

1. resolve sources into files; read ABC files (UTF-8, else Latin-1) and split them into tunes; score
   files (MusicXML, MIDI, kern) are one tune each, converted to ABC in the workers;
2. per tune, in a process pool: normalise, lex, check bars / repeats / truncation, derive labels and
   the transposition-invariant melody fingerprint (optionally the REMI text);
3. de-duplicate on the fingerprint, keeping the first occurrence in source order -- BEFORE splitting,
   so a tune and its transposition can never sit in two splits;
4. split deterministically by a hash of the fingerprint (stable when the corpus grows);
5. augment the train split by transposition (optional);
6. save the ``DatasetDict``, ``report.json`` and ``control_vocabulary.json``.
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

from abcgen.controls import DEFAULT_MIN_COUNT, ControlVocabulary
from abcgen.corpus.labels import header_labels
from abcgen.corpus.sources import SourceFile, read_text, resolve_sources
from abcgen.errors import AbcgenError, ConfigError
from abcgen.notation.bars import events_by_voice
from abcgen.notation.checks import check_tune
from abcgen.notation.pitches import melody_fingerprint
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


def corpus_features():  # noqa: ANN201 - datasets.Features, imported lazily
    """One explicit schema for every split, so an empty split saves and loads like a full one."""
    from datasets import Features, Value

    return Features({name: Value("int64" if name in INT_COLUMNS else "string") for name in COLUMNS})


@dataclass
class BuildConfig:
    """Settings of one corpus build (the CLI flags of ``abcgen data build``)."""

    sources: list[str]
    out: Path
    validation_fraction: float = 0.05  # share of de-duplicated tunes in validation
    test_fraction: float = 0.05  # share in test; the rest is train
    split_seed: int = 0  # salt of the split hash: change it for a different, still deterministic split
    remi: bool = False  # also write REMI token text (ABC -> abc2midi -> miditok); ~20 ms a tune
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
    remi_error: str = ""


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
    from abcgen.notation.musicxml import musicxml_to_abc

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
    return row, ""


_TITLE_RE = re.compile(r"^T:[ \t]*(.*?)[ \t]*$", re.MULTILINE)


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
        from abcgen.notation.remi import abc_to_remi

        try:
            row["remi"] = abc_to_remi(row["abc"])
        except AbcgenError as exc:
            outcome.remi_error = str(exc)
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


def build_corpus(config: BuildConfig, *, progress: bool = True) -> dict[str, Any]:
    """Build the corpus described by ``config`` into ``config.out`` and return the report."""
    import datasets
    from datasets import Dataset, DatasetDict
    from tqdm.auto import tqdm

    if not progress:
        datasets.disable_progress_bars()

    started = time.perf_counter()
    files = resolve_sources(config.sources)
    jobs, rejected_files = collect_jobs(files)
    log.info("%d files, %d tunes to process", len(files), len(jobs))
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

    rejected: list[dict[str, Any]] = []
    duplicates: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    remi_errors: list[dict[str, Any]] = []
    for outcome in outcomes:
        job = jobs[outcome.job_index]
        where = {"source": job.source, "file": job.file, "tune_index": job.tune_index, "title": outcome.title}
        if outcome.row is None:
            rejected.append({**where, "reason": outcome.reason})
            continue
        fp = outcome.row["fingerprint"]
        if fp in seen:
            first = seen[fp]
            duplicates.append({**where, "duplicate_of": {"file": first["file"], "tune_index": first["tune_index"]}})
            continue
        seen[fp] = outcome.row
        split = split_of(fp, config)
        rows[split].append(outcome.row)
        if split == "train":
            rows["train"] += outcome.augmented
        if outcome.remi_error:
            remi_errors.append({**where, "reason": outcome.remi_error})

    config.out.mkdir(parents=True, exist_ok=True)
    features = corpus_features()
    dataset = DatasetDict({
        name: Dataset.from_list(split_rows, features=features) if split_rows
        else Dataset.from_dict({name: [] for name in COLUMNS}, features=features)
        for name, split_rows in rows.items()
    })
    # One shard per split: an empty split saved with datasets' default (0 shards) cannot be loaded back.
    dataset.save_to_disk(str(config.out), num_shards=dict.fromkeys(dataset, 1))
    vocabulary = ControlVocabulary.from_rows(rows["train"], min_count=config.min_label_count)
    vocabulary.save(config.out)

    accepted = sum(1 for o in outcomes if o.row is not None) - len(duplicates)
    label_counts = {
        name: dict(Counter(r[name] or "(none)" for split_rows in rows.values() for r in split_rows
                           if not r["transposition"]).most_common(25))
        for name in ("key", "meter", "rhythm", "origin", "composer", "form", "tempo")
    }
    reason_counts = Counter(r["reason"].split(":")[0].split(" (")[0] for r in rejected)
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
        "remi_failures": remi_errors,
        "per_source": _per_source(jobs, outcomes, duplicates),
        "labels": label_counts,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if report["tunes"]["in"] != accepted + len(rejected) + len(duplicates):  # pragma: no cover - invariant
        raise AssertionError("corpus report does not add up: in != accepted + rejected + duplicates")
    (config.out / REPORT_FILE).write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    return report


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
        f"built in {report['seconds']} s",
    ]
    return "\n".join(lines)


def load_corpus(folder: str | Path):  # noqa: ANN201 - datasets.DatasetDict, imported lazily
    """Load a corpus folder written by ``build_corpus``."""
    from datasets import load_from_disk

    folder = Path(folder)
    if not (folder / "dataset_dict.json").exists():
        raise ConfigError(f"{folder} is not a corpus folder (no dataset_dict.json); build one with "
                          "'abcgen data build --source ... --out DIR'")
    return load_from_disk(str(folder))
