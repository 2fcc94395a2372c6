"""``abcgen listen analyse STUDY/``: preference rates and mean ratings with Bayesian credible intervals.

* **Which answer counts.** The first answer of a rater to each question of a trial (answers are never
  overwritten: a resubmission is a later row, counted in the report as a repeat).
* **Attention checks.** A rater who says a tune played against itself is two different tunes fails; all
  their answers are left out, and the report says how many raters that was.
* **Preference** (A/B trials, per generated system and question): ``k`` of ``n`` answers chose the real
  tune. With a uniform Beta(1, 1) prior the rate has the posterior Beta(1 + k, 1 + n - k); the report gives
  its mean, the 95 % equal-tailed credible interval and P(rate > 1/2). Answers are pooled over raters
  (treated as exchangeable); with few raters who disagree a lot the interval is too narrow.
* **Ratings** (1-5, per system and scale): the answers are an ordinal variable with a categorical
  distribution over the five levels; with a Dirichlet(1, ..., 1) prior its posterior is Dirichlet(1 +
  counts), and the mean rating's credible interval is read from draws of that posterior (no
  equal-spacing or normality assumption beyond scoring the levels 1..5).
* Every number is given for all raters and per rater group (plays an instrument or not).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from abcgen._extras import require
from abcgen.atomic import atomic_output_dir, check_output_dir
from abcgen.errors import ConfigError
from abcgen.listen import store
from abcgen.listen.prepare import REAL, load_study
from abcgen.listen.serve import RATING_SCALES

log = logging.getLogger(__name__)

LEVEL = 0.95
DRAWS = 20_000
PREFERENCE_QUESTIONS = {"play": "would rather play the real tune", "human": "judged the real tune written by a person"}
GROUPS = ("all", "plays an instrument", "does not play")


def beta_interval(k: int, n: int, level: float = LEVEL) -> dict[str, float]:
    """Posterior of a rate after ``k`` successes in ``n`` trials with a uniform prior: Beta(1+k, 1+n-k)."""
    from scipy.stats import beta

    a, b = 1 + k, 1 + n - k
    tail = (1 - level) / 2
    return {"k": k, "n": n, "mean": a / (a + b), "low": float(beta.ppf(tail, a, b)),
            "high": float(beta.ppf(1 - tail, a, b)), "p_above_half": float(beta.sf(0.5, a, b))}


def dirichlet_mean_interval(counts: list[int], level: float = LEVEL, draws: int = DRAWS, seed: int = 0) -> dict[str, Any]:
    """Posterior of the mean of a 1..len(counts) ordinal rating: Dirichlet(1 + counts) over the levels."""
    rng = np.random.default_rng(seed)
    levels = np.arange(1, len(counts) + 1)
    probabilities = rng.dirichlet(1 + np.asarray(counts, dtype=float), size=draws)
    means = probabilities @ levels
    tail = (1 - level) / 2
    n = int(sum(counts))
    return {"n": n, "counts": list(map(int, counts)),
            "sample_mean": float(np.dot(counts, levels) / n) if n else None,
            "mean": float(means.mean()), "low": float(np.quantile(means, tail)),
            "high": float(np.quantile(means, 1 - tail))}


def _group_of(rater: dict[str, Any]) -> str:
    return GROUPS[1] if rater["plays_instrument"] else GROUPS[2]


def analyse_answers(study: dict[str, Any], raters: list[dict[str, Any]], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The analysis as a dict (``results.json``); see the module docstring."""
    trials = {t["id"]: t for t in study["trials"]}
    first: dict[tuple[str, str, str], str] = {}
    repeats = 0
    for answer in answers:
        key = (answer["rater_id"], answer["trial_id"], answer["question"])
        if key in first:
            repeats += 1
        else:
            first[key] = answer["value"]
    by_rater: dict[str, dict[str, dict[str, str]]] = {}
    for (rater_id, trial_id, question), value in first.items():
        by_rater.setdefault(rater_id, {}).setdefault(trial_id, {})[question] = value
    failed, kept, empty = [], [], []
    for rater in raters:
        given = by_rater.get(rater["rater_id"], {})
        if not given:
            empty.append(rater["rater_id"])
            continue
        checks = [a for t, a in given.items() if trials.get(t, {}).get("type") == "attention"]
        (failed if any(a.get("same") != "yes" for a in checks) else kept).append(rater)
    systems = [s for s in study["systems"] if s != REAL]
    preference: dict[str, dict[str, dict[str, Any]]] = {}
    ratings: dict[str, dict[str, dict[str, Any]]] = {}
    for group in GROUPS:
        members = [r for r in kept if group == "all" or _group_of(r) == group]
        chose_real = {(s, q): [0, 0] for s in systems for q in PREFERENCE_QUESTIONS}
        levels = {(s, scale): [0] * 5 for s in study["systems"] for scale, _ in RATING_SCALES}
        for rater in members:
            for trial_id, given in by_rater[rater["rater_id"]].items():
                trial = trials.get(trial_id)
                if trial is None:
                    continue
                if trial["type"] == "ab":
                    real_side = "A" if study["clips"][trial["a"]]["system"] == REAL else "B"
                    for question in PREFERENCE_QUESTIONS:
                        if given.get(question) in ("A", "B"):
                            cell = chose_real[(trial["system"], question)]
                            cell[0] += given[question] == real_side
                            cell[1] += 1
                elif trial["type"] == "rating":
                    system = study["clips"][trial["clip"]]["system"]
                    for scale, _ in RATING_SCALES:
                        if given.get(scale, "").isdigit() and 1 <= int(given[scale]) <= 5:
                            levels[(system, scale)][int(given[scale]) - 1] += 1
        preference[group] = {f"{s}/{q}": {"system": s, "question": q, **beta_interval(k, n)}
                             for (s, q), (k, n) in chose_real.items()}
        ratings[group] = {f"{s}/{scale}": {"system": s, "scale": scale, **dirichlet_mean_interval(c)}
                          for (s, scale), c in levels.items()}
    group_sizes = Counter(_group_of(r) for r in kept)
    return {
        "raters": len(raters), "raters_kept": len(kept), "raters_failed_attention": len(failed),
        "raters_without_answers": len(empty), "group_sizes": {g: group_sizes.get(g, 0) for g in GROUPS[1:]},
        "answers": len(answers), "repeated_answers": repeats, "level": LEVEL,
        "preference": preference, "ratings": ratings,
        "method": {"preference": "Beta(1+k, 1+n-k) posterior of the rate the real tune is chosen (uniform prior), "
                                 "answers pooled over raters",
                   "ratings": "Dirichlet(1+counts) posterior over the five levels; mean rating's interval from "
                              f"{DRAWS} posterior draws"},
    }


def _fmt(cell: dict[str, Any]) -> str:
    if not cell["n"]:
        return "no answers"
    return f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    cells = [c for c in results["preference"]["all"].values() if c["n"]]
    if cells:
        fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(cells) + 1.4))
        labels = [f"{c['system']}: {PREFERENCE_QUESTIONS[c['question']]}" for c in cells]
        y = np.arange(len(cells))
        means = np.array([c["mean"] for c in cells])
        errors = np.array([[c["mean"] - c["low"] for c in cells], [c["high"] - c["mean"] for c in cells]])
        ax.errorbar(means, y, xerr=errors, fmt="o", capsize=4)
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(y, labels)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of answers choosing the real tune (95 % credible interval)")
        fig.tight_layout()
        fig.savefig(out / "preference.png", dpi=110)
        plt.close(fig)
        written.append("preference.png")
    rated = [c for c in results["ratings"]["all"].values() if c["n"]]
    if rated:
        systems = list(dict.fromkeys(c["system"] for c in rated))
        scales = [s for s, _ in RATING_SCALES]
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        width = 0.8 / len(systems)
        for i, system in enumerate(systems):
            row = [results["ratings"]["all"].get(f"{system}/{s}") for s in scales]
            x = np.arange(len(scales)) + (i - (len(systems) - 1) / 2) * width
            means = np.array([c["mean"] if c and c["n"] else np.nan for c in row])
            errors = np.array([[c["mean"] - c["low"] if c and c["n"] else 0 for c in row],
                               [c["high"] - c["mean"] if c and c["n"] else 0 for c in row]])
            ax.errorbar(x, means, yerr=errors, fmt="o", capsize=3, label=system)
        ax.set_xticks(np.arange(len(scales)), scales)
        ax.set_ylim(1, 5)
        ax.set_ylabel("mean rating (95 % credible interval)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "ratings.png", dpi=110)
        plt.close(fig)
        written.append("ratings.png")
    return written


def report_markdown(results: dict[str, Any], plots: list[str]) -> str:
    lines = ["# Listening test", "",
             f"{results['raters']} raters; {results['raters_kept']} kept, {results['raters_failed_attention']} left "
             f"out for failing an attention check (a tune against itself called different), "
             f"{results['raters_without_answers']} without answers. Kept raters who play an instrument: "
             f"{results['group_sizes'][GROUPS[1]]}, who do not: {results['group_sizes'][GROUPS[2]]}. "
             f"{results['answers']} answers stored, {results['repeated_answers']} of them repeats (the first counts).",
             "", "## Preference (A/B: generated against real)", "",
             "Share of answers choosing the **real** tune: posterior mean [95 % credible interval], Beta-binomial "
             "with a uniform prior; 0.5 = raters cannot tell / have no preference.", "",
             "| group | system | question | k / n | real chosen | P(rate > 0.5) |", "|---|---|---|---|---|---|"]
    for group, cells in results["preference"].items():
        for c in cells.values():
            lines.append(f"| {group} | {c['system']} | {PREFERENCE_QUESTIONS[c['question']]} | {c['k']} / {c['n']} | "
                         f"{_fmt(c)} | {c['p_above_half']:.3f} |")
    lines += ["", "## Ratings (1-5)", "",
              "Posterior mean rating [95 % credible interval], Dirichlet-categorical model of the five levels.", "",
              "| group | system | scale | n | mean rating | answers 1..5 |", "|---|---|---|---|---|---|"]
    for group, cells in results["ratings"].items():
        for c in cells.values():
            lines.append(f"| {group} | {c['system']} | {c['scale']} | {c['n']} | {_fmt(c)} | "
                         f"{' '.join(map(str, c['counts']))} |")
    lines += [""] + [f"![{p}]({p})" for p in plots] + ["", "Method: " + "; ".join(results["method"].values()) + "."]
    return "\n".join(lines) + "\n"


def analyse_study(folder: str | Path, out: str | Path | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Read ``STUDY/answers.sqlite``, write ``results.json``, ``report.md`` and the plots to ``out``
    (default ``STUDY/analysis``, whole or not at all); return the results."""
    require("scipy", extra="eval")  # the Beta quantiles; matplotlib for the plots
    require("matplotlib", extra="eval")
    folder = Path(folder)
    study = load_study(folder)
    db = folder / store.DB_FILE
    if not db.is_file():
        raise ConfigError(f"{str(folder)!r} has no answers yet ({store.DB_FILE} is missing): run "
                          f"'abcgen listen serve {folder}' and let raters answer first")
    out = Path(out) if out is not None else folder / "analysis"
    check_output_dir(out, overwrite=overwrite)
    raters, answers = store.read_all(db)
    results = analyse_answers(study, raters, answers)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        plots = _plots(results, tmp)
        (tmp / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        (tmp / "report.md").write_text(report_markdown(results, plots), encoding="utf-8")
    return results
