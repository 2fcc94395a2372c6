"""The report's PNG plots: generated against real, always on the same axes.

Drawn with matplotlib's non-interactive Agg backend (no display needed). Each function takes the report
dict written by ``abcgen.evaluation.report.evaluate_texts`` and returns the file it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abcgen._extras import require

GENERATED, REAL, FLOOR = "#d95f02", "#1b9e77", "#7570b3"


def _pyplot() -> Any:
    require("matplotlib", extra="eval")
    import matplotlib

    matplotlib.use("Agg")  # before pyplot is imported: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def histogram_plot(report: Mapping[str, Any], name: str, title: str, path: Path) -> Path:
    """Side-by-side bars of a pooled histogram (``pitch_class``, ``note_length``, ``interval``)."""
    plt = _pyplot()
    gen, real = report["histograms"]["generated"][name], report["histograms"]["real"][name]
    bins = real["bins"]
    positions = range(len(bins))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(bins)), 3.2))
    width = 0.4
    ax.bar([x - width / 2 for x in positions], gen["probabilities"], width, label="generated", color=GENERATED)
    ax.bar([x + width / 2 for x in positions], real["probabilities"], width, label="real", color=REAL)
    ax.set_xticks(list(positions), bins, rotation=45 if len(bins) > 12 else 0, fontsize=8)
    ax.set_ylabel("share of notes")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def overlap_plot(report: Mapping[str, Any], path: Path) -> Path:
    """Yang-Lerch overlap per feature: generated vs real, and the real-vs-real floor."""
    plt = _pyplot()
    gen, floor = report["overlap"]["generated_vs_real"], report["overlap"]["real_vs_real"]
    features = list(gen)
    positions = range(len(features))
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    width = 0.4
    ax.bar([x - width / 2 for x in positions], [gen[f]["overlap"] for f in features], width,
           label="generated vs real", color=GENERATED)
    ax.bar([x + width / 2 for x in positions], [floor[f]["overlap"] for f in features], width,
           label="real vs real (floor)", color=FLOOR)
    ax.set_xticks(list(positions), [f.replace("_", "\n") for f in features], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("overlap area")
    ax.set_title("Distribution overlap per feature (Yang & Lerch)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def similarity_plot(report: Mapping[str, Any], path: Path) -> Path:
    """Distribution of nearest-training-tune similarity, generated vs held-out real, with the copy line."""
    plt = _pyplot()
    sims = report["similarities"]
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    bins = [i / 40 for i in range(41)]
    for name, colour in (("generated", GENERATED), ("real", REAL)):
        values = [v for v in sims.get(name, []) if v is not None and v == v]
        if values:
            ax.hist(values, bins=bins, alpha=0.6, density=True, label=f"{name} (n={len(values)})", color=colour)
    ax.axvline(0.85, color="black", linestyle="--", linewidth=1, label="copy threshold 0.85")
    ax.set_xlabel("similarity to the nearest training tune")
    ax.set_ylabel("density")
    ax.set_title("Novelty: nearest-neighbour similarity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(report: Mapping[str, Any], out: str | Path) -> list[str]:
    """Every plot the report has data for; returns file names relative to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        histogram_plot(report, "pitch_class", "Pitch classes, generated vs real", out / "pitch_classes.png"),
        histogram_plot(report, "note_length", "Note lengths, generated vs real", out / "note_lengths.png"),
        overlap_plot(report, out / "overlap.png"),
    ]
    if report.get("similarities"):
        written.append(similarity_plot(report, out / "nearest_neighbour.png"))
    return [p.name for p in written]
