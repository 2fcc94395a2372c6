"""MusicVAE: the model, its objective, an overfit case that must reconstruct and interpolate exactly, the
training entry point and ``abcgen interpolate`` as users run them. Tiny models, real tunes, one thread."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_base_tokenizer

import abcgen  # noqa: F401  -- registers the VAE with the Auto classes and the abc-generation task
from abcgen.controls import ControlVocabulary
from abcgen.corpus.labels import header_labels
from abcgen.errors import AbcgenError, ConfigError
from abcgen.generation.constraints import AbcConstraint
from abcgen.generation.latent import decode_latents, interpolate, interpolate_tunes, load_vae, sample_prior
from abcgen.generation.sampling import check_sample
from abcgen.grammar import LEGACY_RULES
from abcgen.models.vae import (
    MusicVAE,
    MusicVaeConfig,
    active_units,
    free_bits_kl,
    gaussian_kl,
    kl_weight_at,
    run_gru,
    slerp,
)
from abcgen.notation.remi import abc2midi_check
from abcgen.notation.tune import normalise_tune
from abcgen.tokenization.extend import abc_to_ids, build_music_tokenizer, save_music_tokenizer
from abcgen.tokenization.units import load_default_spec
from abcgen.training.config import config_from_dict, save_config
from abcgen.training.loss import vae_loss
from abcgen.training.vae_data import (
    build_segments,
    collate_segments,
    count_bars,
    cut_bars,
    segment_tune,
    tune_frame,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
CONDITIONS = ["key", "meter"]


def opening_phrase(abc: str, bars: int = 4) -> str:
    """A real tune's first ``bars`` bars as a short tune of its own: one line, ending with ``|]``."""
    tune = normalise_tune(abc)
    frame = tune_frame(tune)
    body = re.sub(r"\s*\n\s*", " ", cut_bars(tune, bars)[0])
    body = body.removesuffix("|") + "|]" if not body.endswith(("||", ":|", "|]")) else body
    return f"X:1\nT:{tune.title}\nM:{frame.meter_text}\nL:{frame.unit_text}\nK:{frame.key_text}\n{body}\n"


def constraint_can_write(tokenizer, abc: str) -> bool:  # noqa: ANN001
    """Whether constrained decoding can write this tune's body token for token (its grammar has no ties,
    chords, ornaments or broken rhythm, and a full last bar)."""
    frame, bodies = segment_tune(abc, 0)
    ids = abc_to_ids(tokenizer, bodies[0])
    try:
        constraint = AbcConstraint(tokenizer, meter=frame.meter, unit_length=frame.unit_length, key=frame.key_text,
                                   num_bars=count_bars(bodies[0], frame), max_new_tokens=len(ids) + 1,
                                   pickup=frame.pickup, rules=LEGACY_RULES)
        constraint.feed(ids + [tokenizer.eos_token_id])
    except AbcgenError:
        return False
    return constraint.finished


def corpus_rows(abcs: list[str]) -> list[dict[str, object]]:
    """Rows as the corpus has them (abc + labels read from the header)."""
    return [{"abc": abc, **header_labels(normalise_tune(abc))} for abc in abcs]


@pytest.fixture(scope="module")
def phrase_setup(real_tunes: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three opening phrases of real O'Neill's reels (M:C) that the constraint can write, and a music
    tokenizer over the tiny base with their key/meter control tokens."""
    candidates = []
    for abc in real_tunes[:150]:
        try:
            phrase = opening_phrase(abc)
        except AbcgenError:
            continue
        if normalise_tune(phrase).get("M") == "C":
            candidates.append(phrase)
    vocab = ControlVocabulary.from_rows(corpus_rows(candidates), min_count=1)
    base = tiny_base_tokenizer(tmp_path_factory.mktemp("vae-base"))
    tokenizer = build_music_tokenizer(base, load_default_spec(), vocab)
    phrases = [p for p in candidates if constraint_can_write(tokenizer, p)][:3]
    assert len(phrases) == 3, "the fixture needs three writable phrases"
    segments, stats = build_segments(corpus_rows(phrases), tokenizer, vocab, segment_bars=0, max_tokens=128,
                                     conditions=CONDITIONS)
    assert stats.segments == 3 and stats.used_tunes == 3
    return {"phrases": phrases, "tokenizer": tokenizer, "vocab": vocab, "segments": segments}


def tiny_vae(tokenizer, seed: int = 0, latent_size: int = 8) -> MusicVAE:  # noqa: ANN001
    torch.manual_seed(seed)
    config = MusicVaeConfig(vocab_size=-(-len(tokenizer) // 64) * 64, embedding_size=32, encoder_hidden_size=64,
                            decoder_hidden_size=128, latent_size=latent_size, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id, max_tokens=128)
    return MusicVAE(config)


def batch_of(setup: dict[str, object]) -> dict[str, torch.Tensor]:
    tokenizer = setup["tokenizer"]
    return collate_segments(setup["segments"], tokenizer.pad_token_id, tokenizer.eos_token_id)


@pytest.fixture(scope="module")
def overfit(phrase_setup: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The three phrases learnt by heart (a small KL weight: an overfit case, not a smooth latent space),
    saved as train/finetune.py saves a VAE."""
    tokenizer = phrase_setup["tokenizer"]
    model = tiny_vae(tokenizer)
    batch = batch_of(phrase_setup)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss, _ = vae_loss(model, batch, kl_weight=0.01, free_bits=0.0)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    folder = tmp_path_factory.mktemp("vae-overfit") / "final"
    model.save_pretrained(folder)
    save_music_tokenizer(tokenizer, folder)
    phrase_setup["vocab"].save(folder)
    cfg = config_from_dict({"model": {"method": "scratch", "architecture": "vae", "tokenizer": str(folder)},
                            "data": {"corpus": "unused", "conditions": CONDITIONS}})
    save_config(cfg, folder / "abcgen_train_config.yaml")
    return {**phrase_setup, "model": load_vae(folder), "folder": folder}


def same_tune(generated: str, original: str) -> bool:
    """Equal after normalisation: meter, unit length, key and body (the title is not generated)."""
    a, b = normalise_tune(generated), normalise_tune(original)
    return [a.get(k) for k in "MLK"] == [b.get(k) for k in "MLK"] and a.body.strip() == b.body.strip()


# --- the model ------------------------------------------------------------------------------------------


def test_padding_never_enters_the_recurrent_state() -> None:
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 5, batch_first=True)
    tokens = torch.randn(1, 4, 3)
    alone, state = run_gru(gru, tokens, None, None)
    left = torch.cat([torch.randn(1, 2, 3), tokens], dim=1)
    right = torch.cat([tokens, torch.randn(1, 2, 3)], dim=1)
    out_left, state_left = run_gru(gru, left, torch.tensor([[0, 0, 1, 1, 1, 1]]), None)
    out_right, state_right = run_gru(gru, right, torch.tensor([[1, 1, 1, 1, 0, 0]]), None)
    torch.testing.assert_close(out_left[:, 2:], alone)
    torch.testing.assert_close(out_right[:, :4], alone)
    torch.testing.assert_close(state_left, state)
    torch.testing.assert_close(state_right, state)
    assert float(out_left[:, :2].detach().abs().sum()) == 0.0
    unpadded_wrongly, _ = gru(left)  # the point: without the mask the padding changes the result
    assert not torch.allclose(unpadded_wrongly[:, 2:], alone)


def test_loss_decreases_on_a_fixed_batch_and_a_reload_gives_identical_outputs(phrase_setup: dict[str, object],
                                                                             tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = phrase_setup["tokenizer"]
    model = tiny_vae(tokenizer, seed=1)
    batch = batch_of(phrase_setup)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            loss, parts = vae_loss(model, batch, kl_weight=1.0, free_bits=0.0)
        model.train()
        return float(loss)

    before = eval_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(8):
        loss, _ = vae_loss(model, batch, kl_weight=1.0, free_bits=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert eval_loss() < 0.8 * before

    model.eval()
    model.save_pretrained(tmp_path / "vae")
    assert (tmp_path / "vae" / "model.safetensors").is_file()
    for reloaded in (MusicVAE.from_pretrained(tmp_path / "vae"),
                     AutoModelForCausalLM.from_pretrained(tmp_path / "vae")):
        assert isinstance(reloaded, MusicVAE)
        reloaded.eval()
        with torch.no_grad():
            mu, logvar = model.encode(batch["encoder_input_ids"], batch["encoder_attention_mask"])
            mu2, logvar2 = reloaded.encode(batch["encoder_input_ids"], batch["encoder_attention_mask"])
            assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
            logits = model(batch["input_ids"], batch["attention_mask"], latent=mu).logits
            assert torch.equal(logits, reloaded(batch["input_ids"], batch["attention_mask"], latent=mu2).logits)
        prompts = [s.prompt_ids for s in phrase_setup["segments"]]
        assert decode_latents(model, tokenizer, prompts, mu, max_new_tokens=12) == \
            decode_latents(reloaded, tokenizer, prompts, mu2, max_new_tokens=12)


def test_objective_pieces() -> None:
    mu, logvar = torch.tensor([[0.0, 3.0]]), torch.tensor([[0.0, 0.0]])
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.tensor([[0.0, 4.5]]))
    kl = torch.tensor([[0.1, 2.0], [0.3, 4.0]], requires_grad=True)
    term = free_bits_kl(kl, free_bits=0.5)  # dimension 0 (mean 0.2) is under its free 0.5 nats
    term.backward()
    assert float(term.detach()) == pytest.approx(0.5 + 3.0)
    assert kl.grad[:, 0].abs().sum() == 0 and kl.grad[:, 1].abs().sum() > 0
    assert [kl_weight_at(s, 10, 0.5) for s in (0, 5, 10, 50)] == [0.0, 0.25, 0.5, 0.5]
    assert kl_weight_at(0, 0, 0.5) == 0.5
    means = torch.zeros(100, 4)
    means[:, 1] = torch.linspace(-1, 1, 100)  # only dimension 1 varies across the data
    assert active_units(means)[0] == 1


def test_slerp_keeps_the_ends_and_the_norm() -> None:
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    middle = slerp(a, b, 0.5)
    assert float(middle.norm()) == pytest.approx(3.0) and float((a + b).norm() / 2) < 2.2  # a line would shrink it


def test_segments_cut_at_bars_and_skip_what_cannot_be_encoded(phrase_setup: dict[str, object],
                                                              real_tunes: list[str]) -> None:
    tune = normalise_tune(real_tunes[0])
    pieces = cut_bars(tune, 2)
    assert len(pieces) > 3 and all(p.endswith(("|", "||", ":|", "|]")) for p in pieces[:-1])
    assert "".join(p.replace(" ", "").replace("\n", "") for p in pieces) == \
        tune.body.replace(" ", "").replace("\n", "")  # nothing lost, nothing added
    two_voices = "X:1\nM:4/4\nL:1/8\nV:1\nV:2\nK:C\nV:1\nCDEF GABc|\nV:2\nC8|\n"
    rows = corpus_rows([real_tunes[0]]) + [{"abc": two_voices}]
    segments, stats = build_segments(rows, phrase_setup["tokenizer"], phrase_setup["vocab"], segment_bars=2,
                                     max_tokens=12, conditions=CONDITIONS)
    assert stats.skipped_multi_voice == 1 and stats.used_tunes == 1
    assert stats.segments + stats.skipped_long == len(pieces) and all(len(s.body_ids) <= 12 for s in segments)


def test_vae_settings_are_checked() -> None:
    base = {"model": {"method": "scratch", "architecture": "vae", "tokenizer": "tok"}, "data": {"corpus": "c"}}
    with pytest.raises(ConfigError, match="vae.word_dropout"):
        config_from_dict({**base, "vae": {"word_dropout": 1.0}})
    with pytest.raises(ConfigError, match="checkpoint.resume"):
        config_from_dict({**base, "checkpoint": {"resume": "latest"}})
    with pytest.raises(ConfigError, match="vae.latent_size"):
        config_from_dict({**base, "vae": {"latent_size": 0}})


# --- the overfit case: reconstruction and interpolation ---------------------------------------------------


@pytest.mark.slow
def test_greedy_decoding_from_the_mean_reconstructs_each_tune(overfit: dict[str, object]) -> None:
    model, tokenizer, segments = overfit["model"], overfit["tokenizer"], overfit["segments"]
    batch = batch_of(overfit)
    with torch.no_grad():
        mu, _ = model.encode(batch["encoder_input_ids"], batch["encoder_attention_mask"])
    prompts = [s.prompt_ids for s in segments]
    budget = max(len(s.body_ids) for s in segments) + 8
    wanted = [s.body_ids + [tokenizer.eos_token_id] for s in segments]
    assert decode_latents(model, tokenizer, prompts, mu, max_new_tokens=budget) == wanted  # free
    bars = [count_bars(s.body, s.frame) for s in segments]
    constrained = decode_latents(model, tokenizer, prompts, mu, max_new_tokens=budget,
                                 frames=[s.frame for s in segments], num_bars=bars)
    assert constrained == wanted
    other = decode_latents(model, tokenizer, prompts, mu.flip(0), max_new_tokens=budget)
    assert other[0] != wanted[0]  # the decoder reads the latent, not just the prompt


@pytest.mark.slow
def test_interpolation_starts_with_a_and_ends_with_b(overfit: dict[str, object]) -> None:
    a, b = overfit["phrases"][0], overfit["phrases"][1]
    tunes = interpolate_tunes(overfit["model"], overfit["tokenizer"], a, b, steps=5, seed=0)
    assert [t.fraction for t in tunes] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert same_tune(tunes[0].abc, a) and same_tune(tunes[-1].abc, b)
    for tune in tunes:
        assert tune.valid, (tune.problems, tune.abc)
        assert not [line for line in abc2midi_check(tune.abc) if "Error" in line], tune.abc
    keys = [normalise_tune(t.abc).get("K") for t in tunes]
    assert keys == [normalise_tune(a).get("K")] * 2 + [normalise_tune(b).get("K")] * 3  # the nearer tune's frame
    assert interpolate(overfit["model"], overfit["tokenizer"], a, b, steps=5) == [t.abc for t in tunes]


@pytest.mark.slow
def test_interpolation_needs_one_meter(overfit: dict[str, object]) -> None:
    jig = "X:1\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|d2f e2d:|\n"
    with pytest.raises(ConfigError, match="different meters"):
        interpolate(overfit["model"], overfit["tokenizer"], overfit["phrases"][0], jig, steps=3)


@pytest.mark.slow
def test_prior_samples_and_the_pipeline_give_valid_abc(overfit: dict[str, object]) -> None:
    from transformers import pipeline

    samples = sample_prior(overfit["model"], overfit["tokenizer"], meter="C", key="Em", bars=4, num=3, seed=5)
    assert sample_prior(overfit["model"], overfit["tokenizer"], meter="C", key="Em", bars=4, num=3,
                        seed=5) == samples  # seeded
    for sample in samples:
        assert sample.valid, (sample.problems, sample.abc)
        assert normalise_tune(sample.abc).get("K") == "Em"
        assert check_sample(sample.abc).valid and not [x for x in abc2midi_check(sample.abc) if "Error" in x]
    pipe = pipeline("abc-generation", model=str(overfit["folder"]))
    tunes = pipe(key="G", meter="4/4", bars=4, num_return_sequences=2, seed=0)
    assert all(t["valid"] for t in tunes), [t["problems"] for t in tunes]
    assert tunes == pipe(key="G", meter="4/4", bars=4, num_return_sequences=2, seed=0)  # the prior draw is seeded


@pytest.mark.slow
def test_cli_interpolate(overfit: dict[str, object], tmp_path: Path) -> None:
    from abcgen.cli import main

    a, b = tmp_path / "a.abc", tmp_path / "b.abc"
    a.write_text(overfit["phrases"][0], encoding="utf-8")
    b.write_text(overfit["phrases"][2], encoding="utf-8")
    out = tmp_path / "path"
    result = subprocess.run([sys.executable, "-m", "abcgen", "interpolate", str(a), str(b), "--model",
                             str(overfit["folder"]), "--steps", "4", "--out", str(out)],
                            capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["valid"] == summary["num"] == 4 and len(list(out.glob("point_*.abc"))) == 4
    assert same_tune((out / "point_00.abc").read_text(), overfit["phrases"][0])
    assert same_tune((out / "point_03.abc").read_text(), overfit["phrases"][2])
    jig = tmp_path / "jig.abc"
    jig.write_text("X:1\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|d2f e2d:|\n", encoding="utf-8")
    # different meters: refused (with --overwrite, so that the meters are what is refused, not the used --out)
    assert main(["interpolate", str(a), str(jig), "--model", str(overfit["folder"]), "--out", str(out),
                 "--overwrite"]) == 2
    assert summary == json.loads((out / "summary.json").read_text())  # the previous output is untouched


# --- the training entry point ------------------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_trains_a_vae_and_writes_a_loadable_folder(real_tunes: list[str], tmp_path: Path) -> None:
    from abcgen.corpus.build import BuildConfig, build_corpus

    source = tmp_path / "tunes.abc"
    source.write_text("\n\n".join(real_tunes[:80]), encoding="utf-8")
    build_corpus(BuildConfig(sources=[str(source)], out=tmp_path / "corpus", workers=1, validation_fraction=0.2),
                 progress=False)
    vocab = ControlVocabulary.load(tmp_path / "corpus")
    base = tiny_base_tokenizer(tmp_path / "base")
    save_music_tokenizer(build_music_tokenizer(base, load_default_spec(), vocab), tmp_path / "tok")
    run = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train" / "finetune.py"),
               "--config", str(ROOT / "train/configs/tiny-cpu.yaml"),
               "--model.architecture", "vae", "--data.corpus", str(tmp_path / "corpus"),
               "--model.tokenizer", str(tmp_path / "tok"), "--checkpoint.output_dir", str(run),
               "--optim.max_steps", "4", "--logging.eval_every", "2", "--vae.latent_size", "4",
               "--vae.embedding_size", "16", "--vae.encoder_hidden_size", "16", "--vae.decoder_hidden_size", "32",
               "--vae.segment_bars", "4", "--vae.max_tokens", "96", "--vae.kl_anneal_steps", "2",
               "--vae.free_bits", "0.1", "--vae.word_dropout", "0.1", "--vae.reconstruct_segments", "8"]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    final = run / "final"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "control_vocabulary.json",
                 "generation_config.json", "abcgen_train_config.yaml", "training_summary.json"):
        assert (final / name).is_file(), name
    summary = json.loads((final / "training_summary.json").read_text())
    assert summary["steps"] == 4 and summary["architecture"] == "vae"
    assert [e["step"] for e in summary["evaluations"]] == [2, 4]
    assert summary["history"][2]["kl_weight"] == 1.0 and summary["history"][0]["kl_weight"] == 0.0
    for key in ("token_accuracy", "exact_reconstruction", "active_units", "kl_per_segment", "recon_per_token"):
        assert key in summary["eval"], key
    assert summary["eval"]["reconstructed_segments"] == 8 and summary["data"]["train"]["segments"] > 0
    assert summary["parameters"]["total"] == sum(p.numel() for p in load_vae(final).parameters())
    model = load_vae(final)
    assert (model.config.segment_bars, model.config.latent_size) == (4, 4)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    for sample in sample_prior(model, tokenizer, meter="6/8", key="D", num=2, seed=1):
        assert sample.valid, (sample.problems, sample.abc)
        assert not [x for x in abc2midi_check(sample.abc) if "Error" in x]
