"""Print the quickstart's report: corpus sizes, losses before/after each stage, samples passing the bar check,
the evaluation against real test tunes.

    python scripts/quickstart_report.py runs/quickstart
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(root: str) -> int:
    run = Path(root)
    lines = ["", "== abcgen quickstart report =="]
    for name in ("corpus-base", "corpus-finetune"):
        report = json.loads((run / name / "report.json").read_text())
        t = report["tunes"]
        lines.append(f"{name}: {t['in']} tunes in, {t['accepted']} accepted, {t['rejected']} rejected, "
                     f"{t['duplicates']} duplicates; splits {report['splits']}")
    for stage in ("base", "lora"):
        summary = json.loads((run / stage / "final" / "training_summary.json").read_text())
        eval_loss = summary["eval"].get("eval_loss")
        lines.append(
            f"{stage}: {summary['steps']} steps, {summary['tokens_seen']:,} tokens, {summary['seconds']} s; "
            f"train loss {summary['first_loss']:.3f} -> {summary['final_loss']:.3f}"
            + (f"; eval loss {eval_loss:.3f} (perplexity {summary['eval']['eval_perplexity']:.2f})" if eval_loss else "")
            + f"; {summary['parameters']['trainable']:,} of {summary['parameters']['total']:,} parameters trained"
        )
    summary = json.loads((run / "samples" / "summary.json").read_text())
    lines.append(f"generated: {summary['valid']} of {summary['num']} conditioned tunes valid (constrained decoding); "
                 f"ABC, MIDI, WAV and PNG in {run / 'samples'}")
    for tune in summary["tunes"]:
        lines.append(f"  {Path(tune['file']).name}: {tune['conditions']}, {tune['num_bars']} bars, "
                     f"{'valid' if tune['valid'] else 'INVALID: ' + '; '.join(tune['problems'][:2])}")
    report = json.loads((run / "eval" / "report.json").read_text())
    by_name = {m["name"]: m for m in report["metrics"]}
    lines.append(f"evaluation ({report['counts']['generated']} generated vs {report['counts']['real']} real test tunes, "
                 f"seeds {report['decoding']['seeds']}): generated | real")
    for name in ("strict_validity", "bar_alignment_error", "overlap_mean", "pitch_class_entropy", "copy_rate",
                 "key_adherence_ks", "rhythm_adherence"):
        if name in by_name:
            m = by_name[name]
            cells = [m[side]["value"] if m[side] else None for side in ("generated", "real")]
            lines.append(f"  {name:<22} " + " | ".join("-" if v is None else f"{v:.3g}" for v in cells)
                         + (f" {m['unit']}" if m["unit"] else ""))
    lines.append(f"full report: {run / 'eval' / 'report.md'}; model card and repository: {run / 'hub' / 'README.md'}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart"))
