"""Music tokenizer: unit spec, exact round trips on real tunes, saving/loading, embedding init, build command."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from tiny_models import tiny_base_tokenizer, tiny_causal_lm, tiny_metaspace_tokenizer
from transformers import AutoTokenizer

from abcgen.controls import ControlVocabulary
from abcgen.errors import ConfigError
from abcgen.tokenization.build import REPORT_FILENAME, tokenizer_build_command
from abcgen.tokenization.embeddings import resize_and_init_embeddings
from abcgen.tokenization.extend import (
    METADATA_FILENAME,
    PAD_TOKEN,
    abc_to_ids,
    build_music_tokenizer,
    control_token_text,
    ids_to_abc,
    load_music_tokenizer,
)
from abcgen.tokenization.report import compare_tokenizers, count_stats
from abcgen.tokenization.units import SPEC_FILENAME, UnitSpec, build_unit_spec, load_default_spec

CONTROLS = ["<key=D_major>", "<meter=6/8>", "<rhythm=jig>", "<rhythm=slip_jig>", "<bars=16>"]

EDGE_CASES = [
    "",
    "\n",
    "X:1\nT:Schöne Müllerin\nM:3/4\nL:1/8\nK:G\nGAB c2d | e3 d/c/ B2 |]\n",
    "X:1\nT:Ça ira — 春の海 🎻\nK:D\nA2  B2\t\tc2 |  \n\n  d4 |]\n",  # double spaces, tabs, blank line
    "X:1\nT:Reel ||: Cooley's :|| \"Am\"\nK:Edor\n|:\"Em\"E2BE dEBE|\"D\"D2FD ADFD:|\n",  # unit texts in a title
    "X:1\nT:Edge\nK:C\n^^c'2 __B,,3/2 =e// z8 Z4 x2 [CEG]2 {gag}a (3abc (3:2:3 A>B C<<D !trill!e ~f .g H>\n",
    "X:1\nT:Endings\nK:D\n|: A4 :|1 B4 :|2 c4 || [1 d4 ] [2 e4 |] [|f4|] ::g4:: [K:G] [M:3/4] [L:1/16] a |\n",
    "X:1\nK:C\nabc\\\ndef\n% a comment line\nV:2\nw: some lyrics here\n",
    "no header at all, just text with A2 and d/ and |: in it.",
    "  leading spaces\r\nand a CRLF line\r\n",
]


def _embedded_tunes(limit: int) -> list[str]:
    """Normalised real tunes from music21's embedded corpus, from several collections."""
    import music21

    from abcgen.notation.tune import normalise_abc, split_tunes

    root = Path(music21.__file__).parent / "corpus"
    files = (sorted((root / "oneills1850").glob("*.abc"))[:3] + sorted((root / "essenFolksong").glob("*.abc"))[:2]
             + sorted((root / "ryansMammoth").glob("*.abc"))[:60] + sorted((root / "airdsAirs").glob("*.abc"))[:1])
    tunes: list[str] = []
    for path in files:
        for tune in split_tunes(path.read_text(encoding="utf-8", errors="replace")):
            try:
                tunes.append(normalise_abc(tune.text))
            except ValueError:
                continue
    return tunes[:limit]


@pytest.fixture(scope="module")
def tunes() -> list[str]:
    tunes = _embedded_tunes(400)
    assert len(tunes) >= 300
    return tunes


@pytest.fixture(scope="module")
def spec() -> UnitSpec:
    return load_default_spec()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory):
    return tiny_base_tokenizer(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def music(base, spec):
    return build_music_tokenizer(base, spec, CONTROLS)


# --- unit spec -------------------------------------------------------------------------------------------


def test_shipped_spec_is_versioned_and_sane(spec: UnitSpec) -> None:
    assert 100 < len(spec.units) <= spec.max_units
    texts = spec.texts()
    assert {"A2", "d/", ":|", "|:", "(3", "z2"} <= set(texts)
    assert all(len(t) >= 2 and t.isascii() and not any(c.isspace() for c in t) for t in texts)
    assert len(set(texts)) == len(texts)
    assert spec.stats["unit_char_share"] > 0.3
    payload = json.loads(Path(load_default_spec.__globals__["DEFAULT_SPEC_PATH"]).read_text(encoding="utf-8"))
    assert payload["schema_version"] == 1


def test_spec_from_tunes_save_load(tunes: list[str], tmp_path: Path) -> None:
    spec = build_unit_spec(tunes, min_count=5, max_units=50, source="test")
    assert len(spec.units) == 50
    counts = [u.count for u in spec.units]
    assert counts == sorted(counts, reverse=True) and counts[-1] >= 5
    path = spec.save(tmp_path)
    assert path.name == SPEC_FILENAME
    assert UnitSpec.load(tmp_path) == spec
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["schema_version"] = 99
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(ConfigError, match="schema_version 99"):
        UnitSpec.load(path)
    with pytest.raises(ConfigError, match="min_count=0"):
        build_unit_spec(tunes, min_count=0)


# --- round trips -----------------------------------------------------------------------------------------


def test_round_trip_real_tunes(music, tunes: list[str]) -> None:
    for text in tunes:
        assert ids_to_abc(music, abc_to_ids(music, text)) == text
        # Plain HF calls, as a training script would make them (no abcgen helpers).
        assert music.decode(music(text)["input_ids"], skip_special_tokens=True) == text
        assert music.decode(music(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize("text", EDGE_CASES)
def test_round_trip_edge_cases(music, text: str) -> None:
    assert ids_to_abc(music, abc_to_ids(music, text)) == text
    assert ids_to_abc(music, abc_to_ids(music, text, add_special_tokens=True)) == text
    assert music.decode(music(text)["input_ids"], skip_special_tokens=True) == text


def test_round_trip_with_bos_and_controls(tmp_path: Path, spec: UnitSpec, tunes: list[str]) -> None:
    base = tiny_base_tokenizer(tmp_path / "bos", bos=True)
    music = build_music_tokenizer(base, spec, CONTROLS)
    prefix = "<key=D_major><meter=6/8><rhythm=jig>\n"
    for text in tunes[:100] + EDGE_CASES:
        ids = music(prefix + text)["input_ids"]
        assert ids[0] == music.bos_token_id
        assert ids[1:4] == music.convert_tokens_to_ids(["<key=D_major>", "<meter=6/8>", "<rhythm=jig>"])
        assert ids_to_abc(music, ids) == "\n" + text  # controls and BOS are special: dropped
        assert music.decode(ids[1:]) == prefix + text


def test_round_trip_sentencepiece_style_base(tmp_path: Path, spec: UnitSpec, tunes: list[str]) -> None:
    # Metaspace with prepend_scheme="always" would put a space before every isolated note; the builder
    # switches it to "first".
    base = tiny_metaspace_tokenizer(tmp_path / "sp")
    music = build_music_tokenizer(base, spec, CONTROLS)
    for text in tunes[:150] + EDGE_CASES[2:8]:
        assert ids_to_abc(music, abc_to_ids(music, text, add_special_tokens=True)) == text


def test_non_ascii_control_token_is_flagged(base, spec: UnitSpec) -> None:
    music = build_music_tokenizer(base, spec.texts()[:10], ["<origin=Österreich>"])
    assert music.abcgen_metadata["controls_not_decodable"] == ["<origin=Österreich>"]
    # Encoding is still one token; and ABC text around it decodes exactly (the control is skipped).
    ids = abc_to_ids(music, "<origin=Österreich>\nX:1\nK:C\nCDE|\n")
    assert ids[0] == music.convert_tokens_to_ids("<origin=Österreich>")
    assert ids_to_abc(music, ids) == "\nX:1\nK:C\nCDE|\n"


# --- what the tokens are ---------------------------------------------------------------------------------


def test_units_and_controls_are_single_tokens(music, base, spec: UnitSpec) -> None:
    for text in spec.texts() + CONTROLS:
        assert abc_to_ids(music, text) == [music.convert_tokens_to_ids(text)], text
    assert len(music) == len(base) + len({t for t in spec.texts() if t not in base.get_vocab()}) + len(CONTROLS) + 1
    assert music.pad_token == PAD_TOKEN and base.pad_token is None


def test_notes_isolated_but_header_words_keep_base_tokens(music, base) -> None:
    assert music.tokenize("ABcd") == ["A", "B", "c", "d"]
    assert music.tokenize("A2B=e|:") == ["A2", "B", "=e", "|:"]  # units of the shipped spec
    line = "T:The Boys of Ballisodare\n"
    assert music.tokenize(line) == base.tokenize(line)


# --- saving / loading ------------------------------------------------------------------------------------


def test_save_and_autotokenizer_load(base, spec: UnitSpec, tunes: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "music"
    music = build_music_tokenizer(base, spec, ControlVocabulary(values={"key": {"D major": 3}}), save_to=folder)
    assert (folder / SPEC_FILENAME).is_file() and (folder / "tokenizer.json").is_file()
    meta = json.loads((folder / METADATA_FILENAME).read_text(encoding="utf-8"))
    assert meta["schema_version"] == 1 and meta["num_units"] == len(spec.units) and meta["vocab_size"] == len(music)
    loaded = AutoTokenizer.from_pretrained(str(folder))
    for text in tunes[:50] + EDGE_CASES:
        assert loaded(text)["input_ids"] == music(text)["input_ids"]
        assert loaded.decode(loaded(text)["input_ids"], skip_special_tokens=True) == text
    assert load_music_tokenizer(folder).abcgen_metadata["base"] == meta["base"]
    with pytest.raises(ConfigError, match="not an abcgen music tokenizer"):
        load_music_tokenizer(tmp_path)


def test_bad_base_path_is_a_clear_error(tmp_path: Path, spec: UnitSpec) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="cannot load the base tokenizer .*no-such-model"):
        build_music_tokenizer(str(missing), spec)


# --- embeddings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_embedding_rows_start_from_base_means(base, spec: UnitSpec, tied: bool) -> None:
    music = build_music_tokenizer(base, spec.texts()[:40], CONTROLS)
    model = tiny_causal_lm(len(base), tied=tied)
    base_in = model.get_input_embeddings().weight.detach().clone()
    base_out = model.get_output_embeddings().weight.detach().clone()
    new_ids = resize_and_init_embeddings(model, music, base, pad_to_multiple_of=64)

    assert new_ids == list(range(len(base), len(music)))
    w_in = model.get_input_embeddings().weight
    w_out = model.get_output_embeddings().weight
    assert w_in.shape[0] % 64 == 0 and w_in.shape[0] >= len(music)
    assert (w_in.data_ptr() == w_out.data_ptr()) == tied
    assert torch.equal(w_in[: len(base)], base_in)
    for token_id in new_ids:
        token = music.convert_ids_to_tokens(token_id)
        text = control_token_text(token) or token
        ids = base(text, add_special_tokens=False)["input_ids"]
        assert torch.equal(w_in[token_id], base_in[ids].mean(dim=0)), token
        if not tied:
            assert torch.equal(w_out[token_id], base_out[ids].mean(dim=0)), token
    assert torch.equal(w_in[len(music):], base_in.mean(dim=0).expand(w_in.shape[0] - len(music), -1))
    assert control_token_text("<key=D_major>") == "key D major"
    # The resized model runs and its config knows the pad id.
    out = model(torch.tensor([abc_to_ids(music, "X:1\nK:D\nA2B|:\n")]))
    assert out.logits.shape[-1] == w_in.shape[0]
    assert model.config.pad_token_id == music.pad_token_id


# --- report and build command ----------------------------------------------------------------------------


def test_count_stats() -> None:
    stats = count_stats(list(range(1, 11)))
    assert (stats.mean, stats.median, stats.p90, stats.total) == (5.5, 5.5, 9.0, 55)
    assert (stats.p98, stats.max) == (10.0, 10)
    many = count_stats(list(range(1, 101)))
    assert (many.p90, many.p98, many.max) == (90.0, 98.0, 100)


def test_compare_tokenizers(music, base, tunes: list[str]) -> None:
    report = compare_tokenizers(music, base, tunes[:100])
    assert report["num_round_trip_failures"] == 0
    assert report["music"]["num_tunes"] == 100 and report["base"]["mean"] > 0


def _save_corpus(folder: Path, tunes: list[str]) -> None:
    from datasets import Dataset, DatasetDict

    def rows(texts: list[str]) -> list[dict[str, object]]:
        out = []
        for text in texts:
            fields = dict(line.split(":", 1) for line in text.splitlines() if len(line) > 1 and line[1] == ":")
            out.append({"abc": text, "key": fields.get("K", ""), "meter": fields.get("M", ""),
                        "rhythm": fields.get("R", "").lower(), "num_bars": text.count("|")})
        return out

    splits = {"train": tunes[:240], "validation": tunes[240:280], "test": tunes[280:320]}
    DatasetDict({name: Dataset.from_list(rows(texts)) for name, texts in splits.items()}).save_to_disk(str(folder))
    ControlVocabulary.from_rows(rows(splits["train"])).save(folder)


def test_tokenizer_build_command(tmp_path: Path, tunes: list[str]) -> None:
    data, out, base_dir = tmp_path / "corpus", tmp_path / "tok", tmp_path / "base"
    _save_corpus(data, tunes)
    tiny_base_tokenizer(base_dir)
    report = tokenizer_build_command(str(base_dir), data, out, min_count=5)
    assert report["num_round_trip_failures"] == 0
    assert set(report) >= {"train", "validation", "test", "metadata"}
    assert report["metadata"]["num_controls"] == len(ControlVocabulary.load(data).tokens())
    assert json.loads((out / REPORT_FILENAME).read_text(encoding="utf-8"))["train"]["num_tunes"] == 240
    assert UnitSpec.load(out).source.endswith("(train split)")
    loaded = AutoTokenizer.from_pretrained(str(out))
    assert loaded.decode(loaded(tunes[0])["input_ids"], skip_special_tokens=True) == tunes[0]

    shipped = tokenizer_build_command(str(base_dir), data, tmp_path / "tok2", units_spec="shipped")
    assert shipped["metadata"]["num_units"] == len(load_default_spec().units)
    with pytest.raises(ConfigError, match="corpus folder .* does not exist"):
        tokenizer_build_command(str(base_dir), tmp_path / "nope", tmp_path / "tok3")


def test_extending_a_music_tokenizer_again_adds_only_new_tokens(music, tmp_path: Path) -> None:
    # A model fine-tuned with abcgen is extended again for a new corpus: the split is not stacked and
    # only the new control tokens are added.
    again = build_music_tokenizer(music, load_default_spec(), ["<rhythm=reel>", "<rhythm=brand_new>"])
    assert json.loads(again.backend_tokenizer.to_str())["pre_tokenizer"] == \
        json.loads(music.backend_tokenizer.to_str())["pre_tokenizer"]
    assert len(again) == len(music) + len({"<rhythm=reel>", "<rhythm=brand_new>"} - set(music.get_vocab()))
    text = "X:1\nT:Again\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|d2f e2d:|\n"
    assert again.decode(again(text, add_special_tokens=False)["input_ids"]) == text
