"""Every command with bad (and a few legal edge-case) inputs, table-driven (issue 11, "Must show").

Each row states what a user typed and what must come back. For a bad input:

* exit code 2;
* the reason on ONE line: the last non-empty line of stderr holds every listed substring (the offending
  value, an option name) -- log prefixes such as ``2025-01-01 12:00:00 ERROR abcgen:`` are allowed, a
  message spread over several lines fails, and so does one that names the value only in a traceback;
* no ``Traceback`` on stderr, unless the row passes ``-v``: then the traceback must be there;
* for a command that writes, the previous output at the same path (a real earlier output where one exists:
  a corpus, a tokenizer, a report, a published folder, a run; old files otherwise) is byte-for-byte the same
  afterwards: file hashes are compared before and after.

Legal edge cases must exit 0 without a traceback (``abcgen check`` exits 1 on a broken tune by design).

Most rows run the command in this process -- ``abcgen.cli.main(argv)`` and ``runpy`` of train/finetune.py,
exactly the code ``python -m abcgen`` / ``python train/finetune.py`` run -- with stderr captured at the file
descriptor, a fresh logging setup per call (as in a new process) and a watchdog for hangs. A few rows run
real subprocesses to prove the real exit code and stderr (``slow``). The ``abc-generation`` pipeline's
Python arguments must raise an ``abcgen.errors`` exception (what the commands turn into exit code 2) with
a one-line message, before generating anything.
"""

from __future__ import annotations

import json
import logging
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bad_inputs_fixtures import REPO_ID, World, build_world, plant, snapshot

from abcgen.errors import AbcgenError

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = ROOT / "train" / "finetune.py"
TINY_CONFIG = ROOT / "train" / "configs" / "tiny-cpu.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
HANG_S = 90  # an in-process call still running after this is reported as a hang

Needle = str | tuple[str, ...]  # a substring, or alternatives of which one must be there


@dataclass(frozen=True)
class Row:
    """One input. ``argv`` may hold ``{placeholders}`` (see ``Paths``); ``writes`` plants a previous output
    of that kind at ``{out}`` that must survive a failure; ``code`` 0 or 1 marks a legal input."""

    argv: tuple[str, ...]
    needles: tuple[Needle, ...] = ()
    code: int = 2
    writes: str | None = None
    verbose: bool = False


# --- paths a row can name ------------------------------------------------------------------------------------

class Paths(dict):
    """``{name}`` -> a path under the row's tmp_path, created the first time a row names it."""

    def __init__(self, world: World, tmp: Path) -> None:
        super().__init__()
        self.world, self.tmp = world, tmp
        w = world
        self.update(corpus=str(w.corpus), source=str(w.source), base=str(w.base), tok=str(w.tokenizer),
                    model=str(w.model), report=str(w.report), vae=str(w.vae), config=str(TINY_CONFIG),
                    out=str(tmp / "out-folder"), missing=str(tmp / "no-such-thing"))

    def __missing__(self, name: str) -> str:
        path = self.tmp / _MAKERS[name][0]
        _MAKERS[name][1](path, self.world)
        self[name] = str(path)
        return str(path)


def _text(content: str) -> Callable[[Path, World], None]:
    return lambda path, world: path.write_text(content, encoding="utf-8")


def _report_with_plots(plots: list[str]) -> Callable[[Path, World], None]:
    def make(path: Path, world: World) -> None:
        shutil.copytree(world.report, path)
        report = json.loads((path / "report.json").read_text(encoding="utf-8"))
        report["plots"] = plots
        (path / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return make


def _report_of_other_model(path: Path, world: World) -> None:
    shutil.copytree(world.report, path)
    report = json.loads((path / "report.json").read_text(encoding="utf-8"))
    report["model"]["fingerprint"] = "0" * 32
    (path / "report.json").write_text(json.dumps(report), encoding="utf-8")


_MAKERS: dict[str, tuple[str, Callable[[Path, World], None]]] = {
    "empty": ("empty-dir", lambda path, world: path.mkdir()),
    "prose": ("prose.abc", _text("Just some words about a session in Ennis; no tune here.\n")),
    "binary": ("binary.abc", lambda path, world: path.write_bytes(b"\x00\x01\x02\xff\xfe" * 200)),
    "good": ("good.abc", lambda path, world: path.write_text(world.good_tune, encoding="utf-8")),
    "broken": ("broken.abc", _text("X:1\nT:Short bar\nM:4/4\nL:1/8\nK:D\nABcd efga|bagf edc|d8|]\n")),
    "reel": ("reel.abc", lambda path, world: path.write_text(world.reel, encoding="utf-8")),
    "jig": ("jig.abc", lambda path, world: path.write_text(world.jig, encoding="utf-8")),
    "badjson": ("garbage-units.json", _text("{not json at all")),
    "badyaml": ("broken-config.yaml", _text("model: [unclosed\n  method: lora\n")),
    "typoyaml": ("typo-config.yaml",  # the shipped config with one key misspelt
                 lambda path, world: path.write_text(TINY_CONFIG.read_text(encoding="utf-8").replace(
                     "  lr:", "  learning_rate:"), encoding="utf-8")),
    "afile": ("plain-file.txt", _text("a file the user cares about\n")),
    "openprompt": ("open-prompt.abc", _text("dAF DFA\n")),
    "evilreport": ("evil-report", _report_with_plots(["../evil.png"])),
    "otherreport": ("other-report", _report_of_other_model),
    "emptymodel": ("empty-model", lambda path, world: path.mkdir()),
}


# --- running a command ---------------------------------------------------------------------------------------

@dataclass
class Ran:
    code: int | str  # the exit status, or "hung"
    out: str
    err: str

    @property
    def last_line(self) -> str:
        lines = [line for line in re.split(r"[\r\n]", self.err) if line.strip()]
        return lines[-1].strip() if lines else ""

    def describe(self) -> str:
        return (f"exit {self.code}; last stderr line: {self.last_line[:400]!r}; "
                f"traceback: {'Traceback' in self.err}")


class _Hung(BaseException):
    pass


def _on_alarm(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise _Hung


def _in_process(call: Callable[[], Any], capfd: pytest.CaptureFixture[str]) -> Ran:
    """Run ``call`` as if it were a fresh process: root logging unconfigured (so the command's basicConfig
    installs its own stderr handler), SystemExit turned into the exit status, an escaping exception printed
    as Python would print it (status 1), and every logger's state put back afterwards."""
    capfd.readouterr()
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    previous_alarm = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(HANG_S)
    try:
        result = call()
        code: int | str = result if isinstance(result, int) else 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    except _Hung:
        code = "hung"
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 -- what an uncaught exception looks like to the user
        sys.stderr.write(traceback.format_exc())
        code = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_alarm)
        sys.stderr.flush()
        sys.stdout.flush()
        for lg in loggers:
            for handler in list(lg.handlers):
                lg.removeHandler(handler)
        for lg, handlers, level, propagate, disabled in saved:
            for handler in handlers:
                lg.addHandler(handler)
            # setLevel clears the cache of every logger (~450 once transformers is loaded), so calling it on
            # each one is O(n^2): ~20 ms a test, ~3 s of this file's ~10. An unchanged level needs no call.
            if lg.level != level:
                lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled
    out, err = capfd.readouterr()
    return Ran(code, out, err)


def run_abcgen(argv: Sequence[str], capfd: pytest.CaptureFixture[str]) -> Ran:
    from abcgen.cli import main

    return _in_process(lambda: main(list(argv)), capfd)


def run_finetune(argv: Sequence[str], capfd: pytest.CaptureFixture[str]) -> Ran:
    def call() -> Any:
        old_argv = sys.argv
        sys.argv = [str(FINETUNE), *argv]
        try:
            runpy.run_path(str(FINETUNE), run_name="__main__")
        finally:
            sys.argv = old_argv
        return 0
    return _in_process(call, capfd)


def run_subprocess(command: Sequence[str], timeout: float = 300) -> Ran:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return Ran("hung", str(exc.stdout or ""), str(exc.stderr or ""))
    return Ran(result.returncode, result.stdout, result.stderr)


# --- the outcome -------------------------------------------------------------------------------------------

def _has(text: str, needle: Needle) -> bool:
    return any(n in text for n in ((needle,) if isinstance(needle, str) else needle))


def check_outcome(row: Row, ran: Ran, paths: Paths, before: dict[str, str] | None) -> None:
    needles = [n.format_map(paths) if isinstance(n, str) else tuple(a.format_map(paths) for a in n)
               for n in row.needles]
    what = ran.describe()
    if row.code != 2:
        assert ran.code == row.code, f"a legal input must give exit {row.code}: {what}\n{ran.err[-3000:]}"
        assert "Traceback" not in ran.err, f"traceback on a legal input: {what}\n{ran.err[-3000:]}"
        missing = [n for n in needles if not _has(ran.out + ran.err, n)]
        assert not missing, f"output does not name {missing}: {what}\n{ran.out[-2000:]}"
        return
    assert ran.code == 2, f"bad input must exit 2: {what}\n{ran.err[-3000:]}"
    if row.verbose:
        assert "Traceback" in ran.err, f"-v must show the traceback: {what}"
        missing = [n for n in needles if not _has(ran.err, n)]
        assert not missing, f"stderr does not name {missing}: {what}"
    else:
        assert "Traceback" not in ran.err, f"traceback without -v: {what}\n{ran.err[-3000:]}"
        missing = [n for n in needles if not _has(ran.last_line, n)]
        assert not missing, f"the one-line message does not name {missing}: {what}\n{ran.err[-2000:]}"
    if before is not None:
        after = snapshot(Path(paths["out"]))
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"the previous output was changed by a failed command: {changed[:10]} ({what})"


# --- the tables ----------------------------------------------------------------------------------------------

def _without(argv: Sequence[str], *flags: str) -> tuple[str, ...]:
    return tuple(a for a in argv if a not in flags)


DATA = ("data", "build", "--source", "{source}", "--out", "{out}", "--quiet", "--workers", "1", "--overwrite")
TOK = ("tokenizer", "build", "--base", "{base}", "--data", "{corpus}", "--out", "{out}", "--units", "shipped",
       "--overwrite")
BASE = ("tokenizer", "train-base", "--data", "{corpus}", "--out", "{out}", "--vocab-size", "300", "--overwrite")
SAMPLE = ("sample", "--model", "{model}", "--num", "1", "--max-new-tokens", "16", "--out", "{out}", "--overwrite")
GEN = ("generate", "--model", "{model}", "--key", "D", "--meter", "6/8", "--num", "1", "--bars", "2",
       "--out", "{out}", "--overwrite")
RENDER = ("render", "{good}", "--to", "mid", "--out", "{out}")
EVAL = ("evaluate", "--model", "{model}", "--data", "{corpus}", "--num-samples", "2", "--seeds", "1",
        "--bootstrap", "10", "--perplexity-tunes", "2", "--max-bars", "4", "--quiet", "--out", "{out}", "--overwrite")
PUB = ("publish", "--model", "{model}", "--repo-id", REPO_ID, "--no-eval", "--local-dir", "{out}", "--overwrite")
INTERP = ("interpolate", "{reel}", "{reel}", "--model", "{vae}", "--steps", "3", "--max-new-tokens", "24",
          "--out", "{out}", "--overwrite")


def R(argv: Sequence[str], *needles: Needle, code: int = 2, writes: str | None = None,  # noqa: N802
      verbose: bool = False) -> Row:
    return Row(tuple(argv), tuple(needles), code, writes, verbose)


CLI_ROWS: dict[str, Row] = {
    # abcgen data build (--out)
    "data-source-missing": R(DATA + ("--source", "{missing}"), "no-such-thing", writes="corpus"),
    "data-source-empty-folder": R(DATA + ("--source", "{empty}"), "empty-dir", writes="corpus"),
    "data-source-no-tunes": R(DATA + ("--source", "{prose}"), "prose.abc", writes="corpus"),
    "data-source-binary": R(DATA + ("--source", "{binary}"), "binary.abc", writes="corpus"),
    "data-validation-fraction-1.5": R(DATA + ("--validation-fraction", "1.5"), "1.5", writes="corpus"),
    "data-test-fraction-negative": R(DATA + ("--test-fraction", "-0.1"), "-0.1", writes="corpus"),
    "data-fractions-sum-over-1": R(DATA + ("--validation-fraction", "0.6", "--test-fraction", "0.6"), "0.6",
                                   writes="corpus"),
    "data-workers-negative": R(DATA + ("--workers", "-3"), "-3", writes="corpus"),
    "data-workers-not-int": R(DATA + ("--workers", "many"), "many", writes="corpus"),
    "data-min-label-count-zero": R(DATA + ("--min-label-count", "0"), ("min-label-count", "min_label_count"),
                                   writes="corpus"),
    "data-transpose-not-int": R(DATA + ("--transpose-augment", "2,x"), "2,x", writes="corpus"),
    "data-transpose-out-of-range": R(DATA + ("--transpose-augment", "99"), "99", writes="corpus"),
    "data-bar-check-choice": R(DATA + ("--bar-check", "maybe"), "maybe", writes="corpus"),
    "data-used-out-without-overwrite": R(_without(DATA, "--overwrite"), "out-folder", "--overwrite",
                                         writes="corpus"),
    "data-out-is-a-file": R(DATA, "out-folder", writes="afile"),
    "data-out-parent-is-a-file": R(DATA + ("--out", "{afile}/corpus"), "plain-file.txt"),
    "data-verbose-shows-traceback": R(("-v",) + DATA + ("--source", "{missing}"), "no-such-thing",
                                      writes="corpus", verbose=True),
    "data-legal-overwrite-used-out": R(DATA, code=0, writes="corpus"),
    # abcgen tokenizer build (--out)
    "tok-base-missing": R(TOK + ("--base", "{missing}"), "no-such-thing", writes="tokenizer"),
    "tok-base-not-a-tokenizer": R(TOK + ("--base", "{empty}"), "empty-dir", writes="tokenizer"),
    "tok-data-missing": R(TOK + ("--data", "{missing}"), "no-such-thing", writes="tokenizer"),
    "tok-data-not-a-corpus": R(TOK + ("--data", "{empty}"), "empty-dir", writes="tokenizer"),
    "tok-units-missing": R(TOK + ("--units", "{missing}.json"), "no-such-thing.json", writes="tokenizer"),
    "tok-units-not-json": R(TOK + ("--units", "{badjson}"), "garbage-units.json", writes="tokenizer"),
    "tok-used-out-without-overwrite": R(_without(TOK, "--overwrite"), "out-folder", "--overwrite",
                                        writes="tokenizer"),
    "tok-out-parent-is-a-file": R(TOK + ("--out", "{afile}/tok"), "plain-file.txt"),
    "tok-legal-overwrite-used-out": R(TOK, "tokenizer written", code=0, writes="tokenizer"),
    # abcgen tokenizer train-base (--out)
    "base-vocab-size-zero": R(BASE + ("--vocab-size", "0"), ("vocab-size", "vocab_size"), writes="base"),
    "base-vocab-size-negative": R(BASE + ("--vocab-size", "-5"), "-5", writes="base"),
    "base-vocab-size-below-bytes": R(BASE + ("--vocab-size", "100"), "100", writes="base"),
    "base-vocab-size-not-int": R(BASE + ("--vocab-size", "big"), "big", writes="base"),
    "base-data-missing": R(BASE + ("--data", "{missing}"), "no-such-thing", writes="base"),
    "base-used-out-without-overwrite": R(_without(BASE, "--overwrite"), "out-folder", "--overwrite", writes="base"),
    # abcgen check (writes nothing)
    "check-missing-file": R(("check", "{missing}"), "no-such-thing"),
    "check-a-folder": R(("check", "{empty}"), "empty-dir"),
    "check-legal-good-tune": R(("check", "{good}"), ": ok", code=0),
    "check-legal-broken-tune-exits-1": R(("check", "{broken}"), "bar 2", code=1),
    # abcgen sample (--out)
    "sample-model-missing": R(SAMPLE + ("--model", "{missing}"), "no-such-thing", writes="files"),
    "sample-model-not-a-model": R(SAMPLE + ("--model", "{emptymodel}"), "empty-model", writes="files"),
    "sample-unknown-condition-value": R(SAMPLE + ("--conditions", "rhythm=hornpipe"), "hornpipe", writes="files"),
    "sample-unknown-condition-name": R(SAMPLE + ("--conditions", "mood=happy"), "mood", writes="files"),
    "sample-conditions-syntax": R(SAMPLE + ("--conditions", "rhythm"), "rhythm", writes="files"),
    "sample-num-zero": R(SAMPLE + ("--num", "0"), "num", writes="files"),
    "sample-num-negative": R(SAMPLE + ("--num", "-2"), "-2", writes="files"),
    "sample-max-new-tokens-negative": R(SAMPLE + ("--max-new-tokens", "-5"), "-5", writes="files"),
    "sample-out-is-a-file": R(SAMPLE, "out-folder", writes="afile"),
    "sample-used-out-without-overwrite": R(_without(SAMPLE, "--overwrite"), "out-folder", "--overwrite",
                                           writes="files"),
    # abcgen generate (--out)
    "gen-model-missing": R(GEN + ("--model", "{missing}"), "no-such-thing", writes="files"),
    "gen-model-not-a-model": R(GEN + ("--model", "{emptymodel}"), "empty-model", writes="files"),
    "gen-bars-zero": R(GEN + ("--bars", "0"), "bars", writes="files"),
    "gen-bars-negative": R(GEN + ("--bars", "-3"), "-3", writes="files"),
    "gen-bars-fraction": R(GEN + ("--bars", "8.5"), "8.5", writes="files"),
    "gen-bars-100000-no-hang": R(GEN + ("--bars", "100000"), "100000", writes="files"),
    "gen-temperature-zero": R(GEN + ("--temperature", "0"), "temperature", writes="files"),
    "gen-temperature-negative": R(GEN + ("--temperature", "-1"), "-1", writes="files"),
    "gen-top-p-2": R(GEN + ("--top-p", "2"), ("top-p", "top_p"), writes="files"),
    "gen-top-p-zero": R(GEN + ("--top-p", "0"), ("top-p", "top_p"), writes="files"),
    "gen-key-unknown": R(GEN + ("--key", "Zorro"), "Zorro", writes="files"),
    "gen-meter-zero-denominator": R(GEN + ("--meter", "7/0"), "7/0", writes="files"),
    "gen-meter-word": R(GEN + ("--meter", "banana"), "banana", writes="files"),
    "gen-unit-length-bad": R(GEN + ("--unit-length", "1/0"), "1/0", writes="files"),
    "gen-rhythm-unknown": R(GEN + ("--rhythm", "hornpipe"), "hornpipe", writes="files"),
    "gen-pickup-longer-than-bar": R(GEN + ("--pickup", "7/8"), "7/8", writes="files"),
    "gen-pickup-not-a-fraction": R(GEN + ("--pickup", "xyz"), "xyz", writes="files"),
    "gen-form-bars-mismatch": R(GEN + ("--form", "AABB", "--bars", "10"), "AABB", writes="files"),
    "gen-prompt-missing": R(GEN + ("--prompt", "{missing}"), "no-such-thing", writes="files"),
    "gen-prompt-no-bar-line": R(GEN + ("--prompt", "{openprompt}"), "bar line", writes="files"),
    "gen-voices-zero": R(GEN + ("--voices", "0"), "voices", writes="files"),
    "gen-num-zero": R(GEN + ("--num", "0"), "num", writes="files"),
    "gen-render-unknown-format": R(GEN + ("--render", "mp3"), "mp3", writes="files"),
    "gen-budget-too-small": R(GEN + ("--bars", "16", "--max-new-tokens", "5"), ("max-new-tokens", "max_new_tokens"),
                              writes="files"),
    "gen-out-parent-is-a-file": R(GEN + ("--out", "{afile}/gen"), "plain-file.txt"),
    "gen-used-out-without-overwrite": R(_without(GEN, "--overwrite"), "out-folder", "--overwrite", writes="files"),
    "gen-verbose-shows-traceback": R(("-v",) + GEN + ("--model", "{missing}"), "no-such-thing", writes="files",
                                     verbose=True),
    "gen-legal-one-bar": R(GEN + ("--bars", "1"), "1 of 1", code=0),
    # abcgen render (--out)
    "render-file-missing": R(("render", "{missing}", "--to", "mid", "--out", "{out}"), "no-such-thing",
                             writes="files"),
    "render-no-tunes": R(("render", "{prose}", "--to", "mid", "--out", "{out}"), "prose.abc", writes="files"),
    "render-format-unknown": R(RENDER + ("--to", "mp3"), "mp3", writes="files"),
    "render-sample-rate-zero": R(RENDER + ("--to", "wav", "--sample-rate", "0"), ("sample-rate", "sample_rate"),
                                 writes="files"),
    "render-gain-negative": R(RENDER + ("--to", "wav", "--gain", "-1"), "-1", writes="files"),
    "render-soundfont-missing": R(RENDER + ("--to", "wav", "--soundfont", "{missing}.sf2"), "no-such-thing.sf2",
                                  writes="files"),
    "render-legal-midi": R(RENDER, code=0),
    # abcgen evaluate (--out)
    "eval-model-and-abc": R(EVAL + ("--abc", "{good}"), "--abc", writes="report"),
    "eval-neither-model-nor-abc": R(_without(EVAL, "--model", "{model}"), "--model", writes="report"),
    "eval-split-unknown": R(EVAL + ("--split", "dev"), "dev", writes="report"),
    "eval-data-missing": R(EVAL + ("--data", "{missing}"), "no-such-thing", writes="report"),
    "eval-model-empty-folder": R(EVAL + ("--model", "{emptymodel}"), "empty-model", writes="report"),
    "eval-num-samples-zero": R(EVAL + ("--num-samples", "0"), ("num-samples", "num_samples"), writes="report"),
    "eval-seeds-zero": R(EVAL + ("--seeds", "0"), "seeds", writes="report"),
    "eval-bootstrap-negative": R(EVAL + ("--bootstrap", "-1"), "-1", writes="report"),
    "eval-top-p-1.5": R(EVAL + ("--top-p", "1.5"), "1.5", writes="report"),
    "eval-temperature-zero": R(EVAL + ("--temperature", "0"), "temperature", writes="report"),
    "eval-max-bars-zero": R(EVAL + ("--max-bars", "0"), ("max-bars", "max_bars"), writes="report"),
    "eval-grammar-unknown": R(EVAL + ("--grammar", "folk"), "'folk'", "idiom", writes="report"),
    "eval-guidance-scale-negative": R(EVAL + ("--guidance-scale", "-1"), "-1", "guidance", writes="report"),
    "eval-guidance-scale-not-a-number": R(EVAL + ("--guidance-scale", "lots"), "lots", writes="report"),
    "eval-abc-missing": R(_without(EVAL, "--model", "{model}") + ("--abc", "{missing}"), "no-such-thing",
                          writes="report"),
    "eval-abc-no-tunes": R(_without(EVAL, "--model", "{model}") + ("--abc", "{prose}"), "prose.abc",
                           writes="report"),
    "eval-used-out-without-overwrite": R(_without(EVAL, "--overwrite"), "out-folder", "--overwrite",
                                         writes="report"),
    # abcgen publish (--local-dir)
    "pub-model-missing": R(PUB + ("--model", "{missing}"), "no-such-thing", writes="published"),
    "pub-repo-id-bad": R(PUB + ("--repo-id", "not a repo"), "not a repo", writes="published"),
    "pub-report-missing": R(_without(PUB, "--no-eval") + ("--report", "{missing}"), "no-such-thing",
                            writes="published"),
    "pub-report-of-other-model": R(_without(PUB, "--no-eval") + ("--report", "{otherreport}"), "other-report",
                                   writes="published"),
    "pub-report-plot-escapes-folder": R(_without(PUB, "--no-eval") + ("--report", "{evilreport}"), "../evil.png",
                                        writes="published"),
    "pub-neither-report-nor-no-eval": R(_without(PUB, "--no-eval"), "--no-eval", writes="published"),
    "pub-adapter-only-without-adapter": R(PUB + ("--adapter-only",), "--adapter-only", writes="published"),
    "pub-timeout-zero": R(PUB + ("--timeout", "0"), "timeout", writes="published"),
    "pub-used-local-dir-without-overwrite": R(_without(PUB, "--overwrite"), "out-folder", "--overwrite",
                                              writes="published"),
    "pub-local-dir-is-a-file": R(PUB, "out-folder", writes="afile"),
    "pub-legal-overwrite-published": R(PUB, "not pushed", code=0, writes="published"),
    # abcgen interpolate (--out)
    "interp-a-missing": R(("interpolate", "{missing}",) + INTERP[2:], "no-such-thing", writes="files"),
    "interp-a-no-tunes": R(("interpolate", "{prose}",) + INTERP[2:], "prose.abc", writes="files"),
    "interp-different-meters": R(("interpolate", "{reel}", "{jig}") + INTERP[3:], "6/8", writes="files"),
    "interp-steps-one": R(INTERP + ("--steps", "1"), "steps", writes="files"),
    "interp-steps-negative": R(INTERP + ("--steps", "-2"), "-2", writes="files"),
    "interp-max-new-tokens-zero": R(INTERP + ("--max-new-tokens", "0"), ("max-new-tokens", "max_new_tokens"),
                                    writes="files"),
    "interp-model-not-a-vae": R(INTERP + ("--model", "{model}"), "model", writes="files"),
    "interp-model-missing": R(INTERP + ("--model", "{missing}"), "no-such-thing", writes="files"),
    "interp-used-out-without-overwrite": R(_without(INTERP, "--overwrite"), "out-folder", "--overwrite",
                                           writes="files"),
}

# train/finetune.py: the base command line, then each row's changes (None drops a key).
FT_BASE = {"--config": "{config}", "--data.corpus": "{corpus}", "--model.tokenizer": "{tok}",
           "--checkpoint.output_dir": "{out}", "--checkpoint.overwrite": "true", "--optim.max_steps": "3",
           "--logging.num_samples": "0"}


def F(changes: dict[str, str | None], *needles: Needle, code: int = 2, writes: str | None = "run",  # noqa: N802
      flags: Sequence[str] = ()) -> Row:
    merged = {**FT_BASE, **changes}
    argv = [*flags] + [part for key, value in merged.items() if value is not None for part in (key, value)]
    return Row(tuple(argv), tuple(needles), code, writes, "-v" in flags)


FINETUNE_ROWS: dict[str, Row] = {
    "ft-key-typo": F({"--lora.rank": "8"}, "rank", "'r'"),
    "ft-section-typo": F({"--optimm.lr": "0.01"}, "optimm"),
    "ft-lr-not-a-number": F({"--optim.lr": "abc"}, "abc"),
    "ft-lr-zero": F({"--optim.lr": "0"}, "lr"),
    "ft-lr-negative": F({"--optim.lr": "-1e-3"}, ("-1e-3", "-0.001")),
    "ft-max-steps-zero": F({"--optim.max_steps": "0"}, "max_steps"),
    "ft-micro-batch-negative": F({"--optim.micro_batch_size": "-4"}, "-4"),
    "ft-grad-accum-zero": F({"--optim.grad_accum_steps": "0"}, "grad_accum_steps"),
    "ft-warmup-beyond-max-steps": F({"--optim.warmup_steps": "50"}, "warmup_steps"),
    "ft-max-length-zero": F({"--data.max_length": "0"}, "max_length"),
    "ft-eval-every-negative": F({"--logging.eval_every": "-1"}, "-1"),
    "ft-method-unknown": F({"--model.method": "banana"}, "banana"),
    "ft-kv-heads-do-not-divide": F({"--model.scratch.num_kv_heads": "3"}, "num_kv_heads"),
    "ft-resume-unknown": F({"--checkpoint.overwrite": None, "--checkpoint.resume": "banana"}, "banana"),
    "ft-eval-split-unknown": F({"--data.eval_split": "dev"}, "dev"),
    "ft-eval-batches-negative": F({"--logging.eval_batches": "-7"}, "-7"),
    "ft-condition-unknown": F({"--data.conditions": "rhythm,mood"}, "mood"),
    "ft-config-missing": F({"--config": "{missing}.yaml"}, "no-such-thing.yaml"),
    "ft-config-not-yaml": F({"--config": "{badyaml}"}, "broken-config.yaml"),
    "ft-config-key-typo": F({"--config": "{typoyaml}"}, "learning_rate"),
    "ft-corpus-missing": F({"--data.corpus": "{missing}"}, "no-such-thing"),
    "ft-corpus-not-a-corpus": F({"--data.corpus": "{empty}"}, "empty-dir"),
    "ft-tokenizer-missing": F({"--model.tokenizer": "{missing}"}, "no-such-thing"),
    "ft-base-model-missing": F({"--model.method": "lora", "--model.name_or_path": "{missing}", "--model.tokenizer": ""},
                               "no-such-thing"),
    "ft-output-parent-is-a-file": F({"--checkpoint.output_dir": "{afile}/run"}, "plain-file.txt", writes=None),
    "ft-used-output-without-overwrite": F({"--checkpoint.overwrite": None}, "out-folder", "overwrite"),
    "ft-verbose-shows-traceback": F({"--optim.lr": "abc"}, "abc", flags=("-v",)),
    "ft-legal-no-eval-split": F({"--data.eval_split": "", "--checkpoint.output_dir": "{out}"}, code=0, writes=None),
}

# Real processes: the real exit status and stderr of what users type.
SUBPROCESS_ROWS: dict[str, tuple[str, Row]] = {
    "sub-data-source-missing": ("abcgen", CLI_ROWS["data-source-missing"]),
    "sub-gen-top-p-2": ("abcgen", CLI_ROWS["gen-top-p-2"]),
    "sub-gen-bars-100000-no-hang": ("abcgen", CLI_ROWS["gen-bars-100000-no-hang"]),
    "sub-gen-verbose-shows-traceback": ("abcgen", CLI_ROWS["gen-verbose-shows-traceback"]),
    "sub-ft-lr-not-a-number": ("finetune", FINETUNE_ROWS["ft-lr-not-a-number"]),
    "sub-ft-used-output-without-overwrite": ("finetune", FINETUNE_ROWS["ft-used-output-without-overwrite"]),
    "sub-ft-verbose-shows-traceback": ("finetune", FINETUNE_ROWS["ft-verbose-shows-traceback"]),
}

# The abc-generation pipeline's Python arguments: (kwargs, needles); a legal edge case has needles None.
PIPELINE_ROWS: dict[str, tuple[dict[str, Any], tuple[Needle, ...] | None]] = {
    "pipe-bars-fraction": ({"bars": 8.5}, ("8.5",)),
    "pipe-bars-bool": ({"bars": True}, ("True",)),
    "pipe-bars-zero": ({"bars": 0}, ("bars",)),
    "pipe-bars-negative": ({"bars": -4}, ("-4",)),
    "pipe-bars-100000-no-hang": ({"bars": 100000}, ("100000",)),
    "pipe-top-p-2": ({"top_p": 2}, ("top_p",)),
    "pipe-top-p-zero": ({"top_p": 0}, ("top_p",)),
    "pipe-temperature-zero": ({"temperature": 0}, ("temperature",)),
    "pipe-temperature-negative": ({"temperature": -0.5}, ("-0.5",)),
    "pipe-temperature-string": ({"temperature": "hot"}, ("hot",)),
    "pipe-condition-value-unknown": ({"rhythm": "hornpipe"}, ("hornpipe",)),
    "pipe-condition-name-unknown": ({"mood": "happy"}, ("mood",)),
    "pipe-key-unknown": ({"key": "H#"}, ("H#",)),
    "pipe-meter-bad": ({"meter": "6/0"}, ("6/0",)),
    "pipe-pickup-bad": ({"pickup": "xyz"}, ("xyz",)),
    "pipe-num-return-sequences-zero": ({"num_return_sequences": 0}, ("num_return_sequences",)),
    "pipe-num-return-sequences-fraction": ({"num_return_sequences": 2.5}, ("num_return_sequences",)),
    "pipe-max-new-tokens-zero": ({"max_new_tokens": 0}, ("max_new_tokens",)),
    "pipe-voices-zero": ({"voices": 0}, ("voices",)),
    "pipe-seed-not-int": ({"seed": "x"}, ("seed",)),
    "pipe-prompt-no-bar-line": ({"prompt": "dAF DFA"}, ("bar line",)),
    "pipe-legal-one-bar": ({"bars": 1}, None),
    "pipe-legal-top-p-1": ({"top_p": 1.0}, None),
}


# --- fixtures ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, real_tunes: list[str]) -> World:
    return build_world(tmp_path_factory.mktemp("bad-inputs"), real_tunes)


@pytest.fixture(scope="module")
def pipe(world: World):  # noqa: ANN201
    from transformers import pipeline

    import abcgen  # noqa: F401  -- registers the task
    from abcgen.generation.pipeline import TASK

    return pipeline(TASK, model=str(world.model))


def _prepare(row: Row, world: World, tmp_path: Path) -> tuple[Paths, list[str], dict[str, str] | None]:
    paths = Paths(world, tmp_path)
    argv = [a.format_map(paths) for a in row.argv]
    if row.writes:
        plant(row.writes, Path(paths["out"]), world)
    before = snapshot(Path(paths["out"])) if row.writes and row.code == 2 else None
    return paths, argv, before


# --- the tests -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CLI_ROWS))
def test_abcgen_command(name: str, world: World, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    row = CLI_ROWS[name]
    paths, argv, before = _prepare(row, world, tmp_path)
    check_outcome(row, run_abcgen(argv, capfd), paths, before)


@pytest.mark.parametrize("name", list(FINETUNE_ROWS))
def test_finetune(name: str, world: World, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    row = FINETUNE_ROWS[name]
    paths, argv, before = _prepare(row, world, tmp_path)
    check_outcome(row, run_finetune(argv, capfd), paths, before)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SUBPROCESS_ROWS))
def test_real_process(name: str, world: World, tmp_path: Path) -> None:
    program, row = SUBPROCESS_ROWS[name]
    paths, argv, before = _prepare(row, world, tmp_path)
    prefix = [sys.executable, "-m", "abcgen"] if program == "abcgen" else [sys.executable, str(FINETUNE)]
    check_outcome(row, run_subprocess(prefix + argv), paths, before)


@pytest.mark.parametrize("name", list(PIPELINE_ROWS))
def test_pipeline_argument(name: str, pipe, capfd: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    kwargs, needles = PIPELINE_ROWS[name]
    kwargs = dict(kwargs)
    prompt = kwargs.pop("prompt", None)
    request = {"key": "D", "meter": "6/8", "bars": 2, "num_return_sequences": 1, "seed": 0, **kwargs}
    outcome: dict[str, Any] = {}

    def call() -> int:
        try:
            outcome["tunes"] = pipe(prompt, **request)
        except AbcgenError as exc:  # a checked error: the commands turn it into exit code 2
            outcome["error"] = exc
            return 2
        return 0

    ran = _in_process(call, capfd)
    if needles is None:
        assert ran.code == 0, f"a legal request must succeed: {ran.describe()}\n{ran.err[-2000:]}"
        assert outcome["tunes"] and all(t["valid"] for t in outcome["tunes"]), outcome["tunes"]
        return
    assert ran.code != "hung", "the pipeline hung instead of refusing the request"
    assert "error" in outcome, (f"{kwargs} must raise an abcgen.errors exception; got "
                                f"{'tunes' if 'tunes' in outcome else ran.describe()}")
    message = str(outcome["error"])
    assert "\n" not in message.strip(), f"the message is not one line: {message!r}"
    missing = [n for n in needles if not _has(message, n)]
    assert not missing, f"the message does not name {missing}: {message!r}"


@pytest.mark.parametrize(("first", "last", "needle"), [(5, 3, "5"), (0, 2, "first_bar"), (1, 999, "999")],
                         ids=["reversed", "bar-zero", "past-the-end"])
def test_pipeline_infill_range(first: int, last: int, needle: str, pipe, world: World) -> None:  # noqa: ANN001
    """``pipe.infill`` with bars outside the tune: a one-line error naming them, before any generating."""
    with pytest.raises(AbcgenError) as error:
        pipe.infill(world.jig, first, last, attempts=1)
    message = str(error.value)
    assert "\n" not in message.strip() and needle in message, message
