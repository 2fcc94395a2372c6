"""Accompaniment measured (issue 16): the REMI model harmonises 20 real melodies, bar by bar.

    OMP_NUM_THREADS=1 python benchmarks/remi_accompaniment.py            # runs/quickstart/remi/final

The melodies are the soprano lines (violin, program 40) of the test split's chorales: real melodies the model
never trained on, whose real accompaniment (Bach's alto, tenor and bass) is known. For each, the first
``--bars`` bars go to ``pipeline("midi-generation")(melody=..., programs=[41, 42, 43])``: the soprano's notes
are forced where they are, and the model writes viola, cello and contrabass around them. Written to
``--out`` (default ``runs/quickstart/accompaniment``): ``piece_NN.mid/.png/.wav`` generated and
``bach_NN.mid/.png/.wav`` the real four voices of the same bars. ``benchmarks/results/remi_accompaniment.json``:
per piece the validity and the fit measures of ``abcgen.evaluation.accompaniment`` (bars covered, melody
onsets over a sounding bass, consonance with the lowest voice, parallel fifths/octaves per bar, notes per
bar), the same measures for Bach's voices, and whether every soprano note came back as given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adherence import ROOT, environment, write_json  # noqa: E402

log = logging.getLogger("remi-accompaniment")

MELODY, VOICES = 40, [41, 42, 43]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "quickstart" / "remi" / "final")
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "quickstart" / "corpus-base-remi")
    parser.add_argument("--num", type=int, default=20)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quickstart" / "accompaniment")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "remi_accompaniment.json")
    parser.add_argument("--no-audio", action="store_true", help="skip the WAV files (fluidsynth)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch
    from transformers import pipeline

    import abcgen  # noqa: F401  (registers the pipelines)
    from abcgen.atomic import atomic_output_dir
    from abcgen.evaluation.accompaniment import accompaniment_fit, mean_fit
    from abcgen.evaluation.midi import check_midi
    from abcgen.evaluation.run import load_splits
    from abcgen.generation.midi_pipeline import first_bars, forced_notes, only_programs, remi_midi_bytes
    from abcgen.render.audio import render_midi_audio
    from abcgen.render.pianoroll import render_pianoroll

    torch.set_num_threads(1)
    held_out, _ = load_splits(args.corpus, "test")
    rows = [r for r in held_out if r["remi"] and all(f"Program_{p}" in r["remi"] for p in [MELODY, *VOICES])
            and len({t for t in r["remi"].split() if t.startswith("TimeSig_")}) == 1][: args.num]
    pipe = pipeline("midi-generation", model=str(args.model))
    pieces: list[dict[str, Any]] = []
    generated_fits, real_fits = [], []
    with atomic_output_dir(args.out, overwrite=True) as tmp:
        for i, row in enumerate(rows):
            real = first_bars(row["remi"], args.bars)
            melody = only_programs(real, [MELODY])
            bars = real.split().count("Bar_None")
            result = pipe(melody=melody, programs=VOICES, key=row["key"], composer=row["composer"], seed=i)[0]
            entry: dict[str, Any] = {"title": row["title"], "key": row["key"], "bars": bars, "valid": result["valid"],
                                     "problems": result["problems"],
                                     "melody_kept": forced_notes(result["remi"], MELODY) == forced_notes(melody, MELODY)}
            real_midi = remi_midi_bytes(real)
            entry["independent_check"] = check_midi(result["midi"], meter=None, bars=bars,
                                                    programs=[MELODY, *VOICES]).problems
            fit = accompaniment_fit(result["midi"], MELODY, bars)
            bach = accompaniment_fit(real_midi, MELODY, bars)
            generated_fits.append(fit)
            real_fits.append(bach)
            entry["fit"], entry["bach_fit"] = fit.as_dict(), bach.as_dict()
            for name, midi in ((f"piece_{i:02d}", result["midi"]), (f"bach_{i:02d}", real_midi)):
                (tmp / f"{name}.mid").write_bytes(midi)
                render_pianoroll(midi, tmp / f"{name}.png", title=f"{name}: {row['title']}", bars=bars)
                if not args.no_audio:
                    render_midi_audio(midi, tmp / f"{name}.wav")
            pieces.append(entry)
            log.info("%d %s: valid %s, melody kept %s, fit %s (Bach %s)", i, row["title"], result["valid"],
                     entry["melody_kept"], fit.as_dict(), bach.as_dict())
    payload = {"environment": environment(1), "model": str(args.model), "melodies": len(rows), "bars": args.bars,
               "valid": sum(p["valid"] and not p["independent_check"] for p in pieces),
               "melody_kept": sum(p["melody_kept"] for p in pieces),
               "generated": mean_fit(generated_fits), "bach": mean_fit(real_fits), "pieces": pieces,
               "files": str(args.out)}
    write_json(args.json, payload)
    print({k: payload[k] for k in ("melodies", "valid", "melody_kept", "generated", "bach")})


if __name__ == "__main__":
    main()
