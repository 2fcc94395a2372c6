"""``abcgen tokenizer build``: corpus folder + base tokenizer -> music tokenizer folder + report."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from abcgen.atomic import atomic_output_dir, check_apart, check_output_dir
from abcgen.controls import FILENAME as CONTROLS_FILENAME
from abcgen.controls import ControlVocabulary
from abcgen.errors import ConfigError
from abcgen.tokenization.extend import (
    _base_name,
    build_music_tokenizer,
    load_base_tokenizer,
    load_music_tokenizer,
)
from abcgen.tokenization.report import compare_tokenizers
from abcgen.tokenization.units import (
    DEFAULT_MAX_UNITS,
    DEFAULT_MIN_COUNT,
    DEFAULT_SPEC_PATH,
    UnitSpec,
    build_unit_spec,
)

logger = logging.getLogger(__name__)

REPORT_FILENAME = "tokenizer_report.json"
SHIPPED = "shipped"  # units_spec value meaning abcgen/assets/abc_units.json


def _load_corpus(data_dir: Path) -> Any:
    from datasets import load_from_disk  # heavy import, only for this command

    if not data_dir.is_dir():
        raise ConfigError(f"corpus folder {str(data_dir)!r} does not exist; build it with `abcgen data build --out DIR`")
    try:
        corpus = load_from_disk(str(data_dir))
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"{str(data_dir)!r} is not a saved corpus ({exc}); build it with `abcgen data build`") from exc
    if "train" not in corpus or "abc" not in corpus["train"].column_names:
        raise ConfigError(f"corpus {str(data_dir)!r} needs a 'train' split with an 'abc' column; "
                          f"it has splits {list(corpus)}: rebuild it with `abcgen data build`")
    return corpus


def tokenizer_build_command(
    base: str,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    units_spec: str | Path | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    max_units: int = DEFAULT_MAX_UNITS,
    isolate_units: bool = True,
    allow_round_trip_failures: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build, save and check a music tokenizer; returns the report (also written to ``tokenizer_report.json``).

    * ``base``: hub id or folder of the base tokenizer; ``data_dir``: a corpus folder from
      ``abcgen data build``; ``out_dir``: where the tokenizer folder is written.
    * ``units_spec``: ``None`` counts units over the train split (``min_count``/``max_units``);
      ``"shipped"`` uses ``abcgen/assets/abc_units.json``; any other value is a spec file to use.
    * Control tokens come from ``DATA_DIR/control_vocabulary.json`` (none if the file is missing).
    * The saved folder is reloaded with ``AutoTokenizer`` and every tune of every split must decode back
      exactly; otherwise ``ConfigError`` (naming the first failing rows) unless ``allow_round_trip_failures``.
    * The folder is written to a temporary sibling and renamed into place only when every check passed: a
      failure leaves an earlier ``out_dir`` as it was. A used ``out_dir`` is refused unless ``overwrite``.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    check_output_dir(out_dir, overwrite=overwrite)  # before any work
    check_apart(out_dir, [("--data", data_dir), ("--base", base), ("--units", units_spec)])
    base_tok = load_base_tokenizer(base)  # fail on a bad base before the slow corpus work
    corpus = _load_corpus(data_dir)
    train_abc = list(corpus["train"]["abc"])

    if units_spec is None:
        spec = build_unit_spec(train_abc, min_count=min_count, max_units=max_units, source=f"{data_dir} (train split)")
        logger.info("counted %d units over %d training tunes", len(spec.units), len(train_abc))
    else:
        spec = UnitSpec.load(DEFAULT_SPEC_PATH if str(units_spec) == SHIPPED else units_spec)

    controls = None
    if (data_dir / CONTROLS_FILENAME).is_file():
        controls = ControlVocabulary.load(data_dir)
    else:
        logger.warning("%s has no %s: the tokenizer gets no control tokens", data_dir, CONTROLS_FILENAME)

    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        build_music_tokenizer(base_tok, spec, controls, isolate_units=isolate_units, save_to=tmp)
        tokenizer = load_music_tokenizer(tmp)  # check what AutoTokenizer gives back, not the object in memory

        report: dict[str, Any] = {"base": _base_name(base), "out_dir": str(out_dir),
                                  "metadata": tokenizer.abcgen_metadata}
        num_failures = 0
        for split in corpus:
            texts = list(corpus[split]["abc"])
            report[split] = compare_tokenizers(tokenizer, base_tok, texts)
            num_failures += report[split]["num_round_trip_failures"]
            logger.info("%s: %d tunes, tokens/tune %.1f (base %.1f), %d round-trip failures", split, len(texts),
                        report[split]["music"]["mean"], report[split]["base"]["mean"],
                        report[split]["num_round_trip_failures"])
        report["num_round_trip_failures"] = num_failures
        if num_failures and not allow_round_trip_failures:
            first = [f"{split} rows {report[split]['round_trip_failures'][:5]}" for split in corpus
                     if report[split]["round_trip_failures"]]
            # Raised inside the block: the temporary folder goes, an earlier tokenizer at out_dir stays.
            raise ConfigError(
                f"{num_failures} corpus tunes do not decode back exactly with base {_base_name(base)!r} "
                f"({'; '.join(first)}); nothing was written to {str(out_dir)!r}: try isolate_units=False, a "
                "byte-level base tokenizer, or --allow-round-trip-failures to write it anyway"
            )
        (tmp / REPORT_FILENAME).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
