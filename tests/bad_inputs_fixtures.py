"""What tests/test_bad_inputs.py runs every command against, built once per module: a tiny corpus of real
tunes, its tokenizers, a tiny LM model folder (as train/finetune.py writes one), its evaluation report and
published folder, and an untrained MusicVAE folder. Plus the previous outputs planted where a failing
command must leave them alone, and the snapshot that proves it did."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tiny_models import tiny_base_tokenizer, tiny_music_model_folder

from abcgen.errors import AbcgenError

REPO_ID = "tester/bad-inputs"


@dataclass(frozen=True)
class World:
    """Read-only inputs shared by every row (rows write only under their own tmp_path)."""

    source: Path        # a folder holding one .abc file of real tunes
    corpus: Path        # `abcgen data build` output of it
    base: Path          # a byte-level BPE base tokenizer folder
    tokenizer: Path     # `abcgen tokenizer build` output over `base` and `corpus`
    model: Path         # a tiny LM model folder (final/), with training config and summary
    report: Path        # an evaluation report folder written for `model`
    published: Path     # `publish --local-dir` output of `model`
    vae: Path           # an untrained MusicVAE folder
    good_tune: str      # one real tune that passes `abcgen check`
    reel: str           # a real tune in 4/4 (or C)
    jig: str            # a real tune in 6/8


def _first(tunes: list[str], meters: tuple[str, ...]) -> str:
    from abcgen.notation.checks import check_tune
    from abcgen.notation.tune import normalise_tune

    for text in tunes:
        try:
            tune = normalise_tune(text)
            if tune.get("M") in meters and not check_tune(tune).problems:
                return text
        except AbcgenError:
            continue
    raise AssertionError(f"no clean real tune in {meters}")


def _vae_folder(folder: Path, tokenizer) -> Path:  # noqa: ANN001
    """An untrained MusicVAE saved as train/finetune.py saves one (weights, tokenizer, vocabulary, config)."""
    import torch

    from abcgen.models.vae import MusicVAE, MusicVaeConfig
    from abcgen.tokenization.extend import save_music_tokenizer

    torch.manual_seed(0)
    config = MusicVaeConfig(vocab_size=-(-len(tokenizer) // 64) * 64, embedding_size=16, encoder_hidden_size=16,
                            decoder_hidden_size=32, latent_size=4, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id, max_tokens=128)
    MusicVAE(config).save_pretrained(folder)
    save_music_tokenizer(tokenizer, folder)
    return folder


def build_world(root: Path, real_tunes: list[str]) -> World:
    """Everything the rows need, in ~10 s on one core."""
    from test_publish import _finish_model_folder, _write_report

    from abcgen.controls import ControlVocabulary
    from abcgen.corpus.build import BuildConfig, build_corpus
    from abcgen.hub import publish
    from abcgen.tokenization.build import tokenizer_build_command
    from abcgen.tokenization.extend import build_music_tokenizer
    from abcgen.tokenization.units import load_default_spec
    from abcgen.training.config import config_from_dict, save_config

    tunes = real_tunes[:40] + real_tunes[150:170]  # O'Neill's and Ryan's: jigs and reels
    source = root / "source"
    source.mkdir()
    (source / "tunes.abc").write_text("\n\n".join(tunes) + "\n", encoding="utf-8")
    corpus = root / "tiny-corpus"
    build_corpus(BuildConfig(sources=[str(source)], out=corpus, workers=1, min_label_count=1), progress=False)

    model = tiny_music_model_folder(root / "model")
    base = shutil.move(str(model / "_base"), str(root / "base-tokenizer"))
    base = Path(base)
    _finish_model_folder(model, corpus, method="scratch")
    tokenizer = root / "music-tokenizer"
    tokenizer_build_command(str(base), corpus, tokenizer, units_spec="shipped")
    report = _write_report(root / "eval-report", model)
    published = root / "published"
    publish(model, REPO_ID, no_eval=True, local_dir=published)

    rows = [{"key": "D major", "meter": m, "unit_length": "1/8", "rhythm": r, "num_bars": 16}
            for m, r in (("6/8", "jig"), ("4/4", "reel"), ("C", "reel"))]
    vocab = ControlVocabulary.from_rows(rows, min_count=1)
    vae_tokenizer = build_music_tokenizer(tiny_base_tokenizer(root / "vae-base"), load_default_spec(), vocab)
    vae = root / "vae"
    _vae_folder(vae, vae_tokenizer)
    vocab.save(vae)
    cfg = config_from_dict({"model": {"method": "scratch", "architecture": "vae", "tokenizer": str(vae)},
                            "data": {"corpus": "unused", "conditions": ["key", "meter"]}})
    save_config(cfg, vae / "abcgen_train_config.yaml")

    return World(source=source, corpus=corpus, base=base, tokenizer=tokenizer, model=model, report=report,
                 published=published, vae=vae, good_tune=_first(tunes, ("6/8", "4/4", "C")),
                 reel=_first(tunes, ("4/4", "C")), jig=_first(tunes, ("6/8",)))


# --- previous outputs and their snapshot -------------------------------------------------------------------

SENTINEL_FILES = {  # what generate / sample / render / interpolate write into --out, with old content
    "tune_00.abc": "X:1\nT:Previous\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|d2f e2d:|\n",
    "summary.json": json.dumps({"previous": True}),
    "samples.json": json.dumps({"previous": True}),
    "point_00.abc": "X:1\nT:Previous point\nM:4/4\nL:1/8\nK:D\nABcd efga|]\n",
    "good.mid": "MThd previous",
}


def plant(kind: str, out: Path, world: World) -> None:
    """Put a previous output of ``kind`` at ``out``, as an earlier successful run left it."""
    copies = {"corpus": world.corpus, "tokenizer": world.tokenizer, "base": world.base, "report": world.report,
              "published": world.published}
    if kind in copies:
        shutil.copytree(copies[kind], out)
    elif kind == "files":
        out.mkdir(parents=True)
        for name, text in SENTINEL_FILES.items():
            (out / name).write_text(text, encoding="utf-8")
    elif kind == "run":  # a finished train/finetune.py run
        (out / "checkpoints" / "step-5").mkdir(parents=True)
        (out / "checkpoints" / "step-5" / "state.json").write_text('{"step": 5}', encoding="utf-8")
        shutil.copytree(world.model, out / "final")
        (out / "config.yaml").write_text("schema_version: 1\n", encoding="utf-8")
    elif kind == "afile":  # the output path is an ordinary file, not a folder
        out.write_text("not a folder: a file the user cares about\n", encoding="utf-8")
    else:
        raise ValueError(kind)


def snapshot(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (or of ``path`` itself), and every folder."""
    if not path.exists():
        return {}
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    result = {}
    for item in sorted(path.rglob("*")):
        rel = str(item.relative_to(path))
        result[rel] = hashlib.sha256(item.read_bytes()).hexdigest() if item.is_file() else "<dir>"
    return result
