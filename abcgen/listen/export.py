"""``abcgen listen export STUDY/ --to webmushra,beaqlejs``: the study for people who run those tools.

* **webMUSHRA** (audiolabs/webMUSHRA): ``webmushra/configs/abcgen_study.yaml`` with the audio under
  ``webmushra/configs/resources/audio/abcgen/``: copy both into a webMUSHRA checkout. A/B trials become
  ``paired_comparison`` pages (the real tune as ``reference``, the generated one as stimulus ``C1``),
  rating trials ``likert_single_stimulus`` pages (one per scale, levels 1-5), attention checks a
  ``paired_comparison`` of a real tune against itself; then a ``finish`` page that writes the results.
* **BeaqleJS** (HSU-ANT/beaqlejs): ``beaqlejs/config/abcgen_abx.js`` (``TestConfig`` of the ABX test: each
  A/B pair with ``X`` drawn from them, a discrimination test) and ``beaqlejs/config/abcgen_mushra.js``
  (each pair as a MUSHRA set: the real tune as ``Reference``, the generated tune and the hidden
  reference as conditions), audio under ``beaqlejs/audio/abcgen/``.
* ``key.json`` maps every anonymous clip to its system and source tune (for the experimenter, not raters).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from abcgen.atomic import atomic_output_dir
from abcgen.errors import ConfigError
from abcgen.listen.prepare import REAL, load_study
from abcgen.listen.serve import AB_QUESTIONS, RATING_LABELS, RATING_SCALES

FORMATS = ("webmushra", "beaqlejs")


def parse_export_formats(text: str) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    unknown = [t for t in wanted if t not in FORMATS]
    if unknown or not wanted:
        raise ConfigError(f"export format(s) {', '.join(unknown) or repr(text)}: choose from {', '.join(FORMATS)}")
    return wanted


def _real_and_generated(study: dict[str, Any], trial: dict[str, Any]) -> tuple[str, str]:
    a, b = trial["a"], trial["b"]
    return (a, b) if study["clips"][a]["system"] == REAL else (b, a)


def webmushra_config(study: dict[str, Any], audio: str) -> dict[str, Any]:
    """The webMUSHRA test configuration (a dict to dump as YAML); ``audio`` is the clips' folder as
    webMUSHRA sees it."""
    pages: list[Any] = [{"type": "generic", "id": "welcome", "name": "Listening test",
                         "content": "You will hear short tunes; some were written by people, some by a computer."}]
    trials: list[dict[str, Any]] = []
    legend = dict((name, text) for name, text, _ in AB_QUESTIONS)
    for trial in study["trials"]:
        if trial["type"] in ("ab", "attention"):
            real, generated = _real_and_generated(study, trial)
            trials.append({"type": "paired_comparison", "id": trial["id"], "name": trial["id"],
                           "content": f"{legend['play']} {legend['human']}", "showWaveform": False,
                           "enableLooping": False, "reference": f"{audio}/{real}.wav",
                           "stimuli": {"C1": f"{audio}/{generated}.wav"}})
        else:
            for scale, label in RATING_SCALES:
                trials.append({"type": "likert_single_stimulus", "id": f"{trial['id']}_{scale}",
                               "name": f"{trial['id']} {label}", "content": f"Rate the {label.lower()} from 1 to 5.",
                               "mustPlayback": "ended", "stimuli": {"C1": f"{audio}/{trial['clip']}.wav"},
                               "response": [{"value": v, "label": t} for v, t in RATING_LABELS.items()]})
    pages.append(["random", *trials])  # webMUSHRA shuffles the pages of a list that starts with "random"
    pages.append({"type": "finish", "name": "Thank you", "content": "Thank you for listening.",
                  "showResults": False, "writeResults": True,
                  "questionnaire": [{"type": "number", "label": "Years playing an instrument", "name": "years",
                                     "min": 0, "max": 90, "default": 0}]})
    return {"testname": "abcgen listening test", "testId": f"abcgen_{study['seed']}", "bufferSize": 2048,
            "stopOnErrors": True, "showButtonPreviousPage": False, "remoteService": "service/write.php",
            "pages": pages}


def beaqlejs_configs(study: dict[str, Any], audio: str) -> dict[str, dict[str, Any]]:
    """The BeaqleJS ``TestConfig`` objects of the ABX and the MUSHRA test: {"abx": ..., "mushra": ...}."""
    common = {"RateScalePng": "img/scale_abs.png", "RateScaleBgPng": "img/scale_abs_background.png",
              "ShowFileIDs": False, "ShowResults": False, "LoopByDefault": False, "EnableABLoop": False,
              "EnableOnlineSubmission": False, "BeaqleServiceURL": "", "SupervisorContact": "",
              "RandomizeTestOrder": True, "MaxTestsPerRun": -1, "AudioRoot": f"{audio}/"}
    pairs = [t for t in study["trials"] if t["type"] == "ab"]
    abx = {"TestName": "abcgen: real or generated (ABX)", **common, "Testsets": [
        {"Name": t["id"], "TestID": t["id"], "Files": {"A": f"{t['a']}.wav", "B": f"{t['b']}.wav"}} for t in pairs]}
    sets = []
    for t in pairs:
        real, generated = _real_and_generated(study, t)
        sets.append({"Name": t["id"], "TestID": t["id"],
                     "Files": {"Reference": f"{real}.wav", "1": f"{generated}.wav", "2": f"{real}.wav"}})
    mushra = {"TestName": "abcgen: generated against real (MUSHRA)", **common, "RateMinValue": 0,
              "RateMaxValue": 100, "RateDefaultValue": 0, "RequireMaxRating": False, "Testsets": sets}
    return {"abx": abx, "mushra": mushra}


def export_study(folder: str | Path, out: str | Path | None = None, formats: tuple[str, ...] = FORMATS, *,
                 overwrite: bool = False) -> dict[str, Path]:
    """Write the exports to ``out`` (default ``STUDY/export``, whole or not at all); return {format: folder}."""
    import yaml


    folder = Path(folder)
    study = load_study(folder)
    out = Path(out) if out is not None else folder / "export"
    written: dict[str, Path] = {}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "key.json").write_text(json.dumps({c: {k: v for k, v in clip.items() if k != "abc"}
                                                  for c, clip in study["clips"].items()}, indent=1), encoding="utf-8")
        for fmt in formats:
            if fmt == "webmushra":
                audio = "configs/resources/audio/abcgen"
                (tmp / "webmushra" / audio).mkdir(parents=True)
                (tmp / "webmushra" / "configs" / "abcgen_study.yaml").write_text(
                    yaml.safe_dump(webmushra_config(study, audio), sort_keys=False, allow_unicode=True), encoding="utf-8")
            else:
                audio = "audio/abcgen"
                (tmp / "beaqlejs" / audio).mkdir(parents=True)
                (tmp / "beaqlejs" / "config").mkdir()
                for name, config in beaqlejs_configs(study, audio).items():
                    (tmp / "beaqlejs" / "config" / f"abcgen_{name}.js").write_text(
                        "// BeaqleJS test configuration written by abcgen listen export\n"
                        f"var TestConfig = {json.dumps(config, indent=2)};\n", encoding="utf-8")
            for clip in study["clips"].values():
                shutil.copy2(folder / clip["file"], tmp / fmt / audio / Path(clip["file"]).name)
            written[fmt] = out / fmt
    return written
