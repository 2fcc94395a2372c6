"""MusicGAN: piano rolls <-> ABC, WGAN-GP / hinge training signals, save/reload, the training entry point and
``abcgen generate`` on a GAN folder (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from abcgen.generation.gan import generate_abc
from abcgen.generation.sampling import check_sample
from abcgen.models.gan import MusicGAN, MusicGANConfig, critic_loss, generator_loss, is_gan_folder
from abcgen.models.pianoroll import (
    RollGrid,
    WindowReport,
    decode_melody,
    roll_to_abc,
    white_key_shift,
    windows_from_abc,
)
from abcgen.notation.keys import parse_key
from abcgen.notation.lexer import parse_fraction
from abcgen.notation.piece import read_piece
from abcgen.notation.remi import abc2midi_check

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
GRID = RollGrid()  # 4 bars, 16 steps a whole note, 18 steps wide, MIDI 52..91
# Every meter the default grid holds (a whole number of sixteenths, at most 18 a bar).
METERS = ("2/4", "3/4", "4/4", "2/2", "6/8", "9/8", "3/8", "5/8", "7/8")
KEYS = ("C", "D", "G", "Bb", "F# minor", "E dorian", "A mixolydian", "Eb major", "B minor", "F lydian", "Ab")


def _tiny_config(loss: str = "wgan-gp") -> MusicGANConfig:
    return MusicGANConfig(latent_size=8, condition_size=4, generator_width=32, critic_width=32, loss=loss,
                          modes=["major", "minor"], meters=["4/4", "6/8"], rhythms=["none", "reel", "jig"])


# --- piano roll <-> ABC ------------------------------------------------------------------------------------

def test_repeated_notes_rests_and_key_survive_the_roll() -> None:
    abc = "X:1\nT:t\nM:4/4\nL:1/8\nK:G\nGGGG A2B2 | z2 d2 ^c2 =c2 | B4- B2 z2 | g8 |]\n"
    report = WindowReport()
    [window] = windows_from_abc(abc, GRID, report)
    assert (window.mode, window.meter, window.key, window.transposed_by) == ("major", "4/4", "G major", 5)
    notes = decode_melody(window.roll, GRID, Fraction(1))
    # Four separate G quavers (onsets keep them apart), in C after the move from G (+5 semitones).
    assert [(n.start, n.steps, n.pitch) for n in notes[:4]] == [(0, 2, 72), (2, 2, 72), (4, 2, 72), (6, 2, 72)]
    back = roll_to_abc(window.roll, GRID, meter="4/4", key="G")
    assert "K:G\n" in back and back.rstrip().endswith("|]")
    assert read_piece(back).melody == read_piece(abc).melody  # the same notes, onsets, lengths and pitches


def _window_notes(abc: str, start: Fraction, bars: int) -> list[tuple[Fraction, Fraction, int]]:
    """(onset, duration, pitch) of the melody notes in ``bars`` bars from ``start``, clipped to the window."""
    piece = read_piece(abc)
    end = start + bars * piece.meter
    return [(max(n.onset, start) - start, min(n.onset + n.duration, end) - max(n.onset, start), n.pitch)
            for n in piece.melody if n.onset < end and n.onset + n.duration > start]


@pytest.mark.slow
def test_real_windows_keep_their_pitches_and_onsets(real_tunes: list[str]) -> None:
    checked = 0
    seen_meters = set()
    for abc in real_tunes[:300]:  # O'Neill's and Ryan's: reels, jigs, hornpipes, airs, 2/4 .. 9/8
        report = WindowReport()
        windows = windows_from_abc(abc, GRID, report)
        if not windows or report.notes_moved_to_grid or report.notes_overwritten or report.windows_octave_moved:
            continue  # only tunes already on the grid can come back note for note
        piece = read_piece(abc)
        for window in windows[:2]:
            start = Fraction(window.source.rsplit("@ ", 1)[1])
            out = roll_to_abc(window.roll, GRID, meter=window.meter, key=window.key)
            assert check_sample(out).valid, out
            got = [(n.onset, n.duration, n.pitch) for n in read_piece(out).melody]
            assert got == _window_notes(abc, start, GRID.bars), (piece.tune.title, out)
            checked += 1
            seen_meters.add(window.meter)
    assert checked >= 100 and {"2/4", "6/8", "3/4", "2/2"} <= seen_meters


def test_windows_report_every_skipped_tune() -> None:
    report = WindowReport()
    tunes = ["X:1\nM:4/4\nL:1/8\nK:D\nABcd efga | b8 |]\n",  # two bars: too short for a 4-bar window
             "X:1\nM:3/2\nL:1/8\nK:D\n" + "A4B4c4 | " * 5 + "|]\n",  # 24 steps a bar > 18
             "X:1\nM:4/4\nL:1/8\nK:none\n" + "ABcd efga | " * 5 + "|]\n",
             "X:1\nM:4/4\nL:1/8\nK:D\n|: A2 | " + "d2f2 a2f2 | " * 8 + "d6 :|\n"]  # pickup, 8 bars -> 2 windows
    windows = [w for abc in tunes for w in windows_from_abc(abc, GRID, report)]
    assert (report.tunes, report.tunes_used, report.windows, len(windows)) == (4, 1, 2, 2)
    assert sum(report.skipped_tunes.values()) == 3
    assert any("fewer than 4" in r for r in report.skipped_tunes) and any("24 steps" in r for r in report.skipped_tunes)
    # The pickup is skipped: the first window starts with the first whole bar (d2f2 ...).
    assert decode_melody(windows[0].roll, GRID, Fraction(1))[0].pitch == 74 + white_key_shift(parse_key("D"))  # d, not A


def _random_roll(rng: np.random.Generator, bars: int) -> np.ndarray:
    density = rng.uniform(0.01, 0.3)
    roll = np.zeros((2, bars, GRID.bar_steps, GRID.num_pitches), dtype=np.uint8)
    roll[0] = rng.random(roll.shape[1:]) < density
    roll[1] = (rng.random(roll.shape[1:]) < 0.5) & (roll[0] > 0)
    return roll


def test_random_rolls_give_valid_abc_in_every_meter_and_key() -> None:
    rng = np.random.default_rng(0)
    for meter in METERS:
        for seed in range(12):
            key = KEYS[(seed + len(meter)) % len(KEYS)]
            bars = GRID.bars if seed % 3 else int(rng.integers(1, 9))
            roll = _random_roll(rng, bars)
            abc = roll_to_abc(roll, GRID, meter=meter, key=key, rhythm="reel" if seed % 2 else "")
            check = check_sample(abc)
            assert check.valid, (meter, key, check.problems, abc)
            assert abc2midi_check(abc) == [], (meter, key, abc)
            assert f"M:{meter}\n" in abc and abc.rstrip().endswith("|]")
            assert parse_key(abc.split("K:")[1].splitlines()[0]).tonic_semitone() == parse_key(key).tonic_semitone()
            if any(b["ok"] for b in check.bars):
                assert {b["duration"] for b in check.bars} == {str(parse_fraction(meter))}
            if bars == GRID.bars and roll[0].any():
                # Back to a roll: the same melody step for step (pitches, onsets, lengths on the grid).
                report = WindowReport()
                [window] = windows_from_abc(abc, GRID, report)
                length = parse_fraction(meter)
                assert decode_melody(window.roll, GRID, length) == decode_melody(roll, GRID, length), abc


# --- training signals ------------------------------------------------------------------------------------

def _real_batch(real_tunes: list[str], model: MusicGAN) -> tuple[torch.Tensor, torch.Tensor]:
    report = WindowReport()
    windows = [w for abc in real_tunes[150:300] for w in windows_from_abc(abc, GRID, report)
               if w.meter in ("4/4", "2/2")][:16]
    rolls = torch.from_numpy(np.stack([w.roll for w in windows])).float()
    conditions = torch.tensor([model.condition_ids(w.mode if w.mode in ("major", "minor") else "major", "4/4",
                                                   "reel") for w in windows])
    return rolls, conditions


def _train_critic(model: MusicGAN, real: torch.Tensor, fake: torch.Tensor, conditions: torch.Tensor, loss: str,
                  steps: int = 30) -> list[float]:
    """Critic updates on one fixed batch; the Wasserstein estimate D(real) - D(fake) before each."""
    optimizer = torch.optim.Adam(model.critic.parameters(), lr=1e-3, betas=(0.5, 0.9))
    estimates = []
    for _ in range(steps):
        loss_value, stats = critic_loss(model.critic, real, fake, conditions, loss, gp_weight=10.0)
        optimizer.zero_grad()
        loss_value.backward()
        optimizer.step()
        estimates.append(stats["wasserstein"])
    return estimates


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
@pytest.mark.slow
def test_critic_alone_separates_real_from_fake(real_tunes: list[str], loss: str) -> None:
    torch.manual_seed(0)
    model = MusicGAN(_tiny_config(loss))
    real, conditions = _real_batch(real_tunes, model)
    with torch.no_grad():
        fake = model.generator(torch.randn(len(real), 8), conditions)
    estimates = _train_critic(model, real, fake, conditions, loss)
    # D(real) - D(fake) starts near 0 and grows as the critic learns to tell them apart.
    assert abs(estimates[0]) < 0.5 and estimates[-1] > estimates[0] + 0.5, estimates


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
@pytest.mark.slow
def test_generator_alone_fools_a_fixed_critic(real_tunes: list[str], loss: str) -> None:
    torch.manual_seed(0)
    model = MusicGAN(_tiny_config(loss))
    real, conditions = _real_batch(real_tunes, model)
    z = torch.randn(len(real), 8)
    with torch.no_grad():
        fake = model.generator(z, conditions)
    separation = _train_critic(model, real, fake, conditions, loss)[-1]  # a critic that tells them apart
    model.critic.eval()  # then fixed: no updates, no spectral-norm power iterations
    model.critic.requires_grad_(False)
    critic_before = {k: v.clone() for k, v in model.critic.state_dict().items()}
    optimizer = torch.optim.Adam(model.generator.parameters(), lr=1e-3, betas=(0.5, 0.9))
    losses = []
    for _ in range(30):
        loss_value = generator_loss(model.critic, model.generator(z, conditions), conditions)
        optimizer.zero_grad()
        loss_value.backward()
        optimizer.step()
        losses.append(float(loss_value.detach()))
    # -D(fake) falls: the generator moves its rolls to where the critic scores real ones.
    assert losses[-1] < losses[0] - 0.5 * separation, (separation, losses)
    assert all(torch.equal(v, critic_before[k]) for k, v in model.critic.state_dict().items())


def test_generated_rolls_are_monophonic_and_masked_to_the_meter() -> None:
    torch.manual_seed(0)
    model = MusicGAN(_tiny_config())
    conditions = torch.tensor([model.condition_ids("major", "6/8", "jig")] * 4)
    with torch.no_grad():  # binary like the real rolls (straight-through: the gradients are the probabilities')
        assert set(model.generator(model.sample_latent(4, seed=1), conditions).unique().tolist()) == {0.0, 1.0}
    rolls = model.generate_rolls(model.sample_latent(4, seed=1), conditions)
    assert rolls.shape == (4, *GRID.shape) and rolls.dtype == np.uint8
    assert rolls[:, 0].sum(-1).max() <= 1  # at most one pitch a step
    assert not rolls[:, :, :, 12:].any()  # a 6/8 bar has 12 steps
    assert not (rolls[:, 1] & ~rolls[:, 0]).any()  # an onset only where a note sounds


# --- save / reload -------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_save_reload_gives_identical_outputs(tmp_path: Path, loss: str) -> None:
    torch.manual_seed(0)
    model = MusicGAN(_tiny_config(loss)).eval()
    folder = model.save_pretrained(tmp_path / "gan")
    assert is_gan_folder(folder) and not is_gan_folder(tmp_path)
    loaded = MusicGAN.from_pretrained(folder)
    z, conditions = model.sample_latent(5, seed=3), torch.tensor([[0, 1, 2]] * 5)
    with torch.no_grad():
        assert torch.equal(model.generator(z, conditions), loaded.generator(z, conditions))
        rolls = model.generator(z, conditions)
        assert torch.equal(model.critic(rolls, conditions), loaded.critic(rolls, conditions))
    conditions_text = {"key": "E minor", "meter": "6/8", "rhythm": "jig"}
    tunes = generate_abc(model, conditions_text, 3, seed=7, bars=6)
    assert tunes == generate_abc(folder, conditions_text, 3, seed=7, bars=6)
    assert tunes != generate_abc(folder, conditions_text, 3, seed=8, bars=6)
    for abc in tunes:
        assert abc.count("|") == 6 and "K:Em\n" in abc and "R:jig\n" in abc  # 6 bars: 5 bar lines and |]
        assert check_sample(abc).valid and abc2midi_check(abc) == []
    with pytest.raises(Exception, match="choose one of major, minor"):
        generate_abc(model, {"key": "D dorian", "meter": "6/8"}, 1, seed=0)


# --- the entry point and the command line ----------------------------------------------------------------

@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory, real_tunes: list[str]) -> Path:
    from abcgen.corpus.build import BuildConfig, build_corpus

    root = tmp_path_factory.mktemp("gan")
    (root / "tunes.abc").write_text("\n\n".join(real_tunes[:300]) + "\n", encoding="utf-8")  # O'Neill's + Ryan's
    build_corpus(BuildConfig(sources=[str(root / "tunes.abc")], out=root / "corpus", workers=1), progress=False)
    command = [sys.executable, str(ROOT / "train" / "finetune.py"), "--config", str(ROOT / "train/configs/gan-cpu.yaml"),
               "--data.corpus", str(root / "corpus"), "--checkpoint.output_dir", str(root / "run"),
               "--model.architecture", "gan", "--optim.max_steps", "3", "--optim.micro_batch_size", "8",
               "--gan.generator_width", "32", "--gan.critic_width", "32", "--gan.critic_steps", "2",
               "--logging.log_every", "1", "--logging.eval_every", "3", "--logging.num_samples", "2"]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return root / "run" / "final"


@pytest.mark.slow
def test_finetune_writes_a_loadable_gan_folder(gan_run: Path) -> None:
    for name in ("config.json", "model.safetensors", "control_vocabulary.json", "abcgen_train_config.yaml",
                 "training_summary.json"):
        assert (gan_run / name).is_file(), name
    summary = json.loads((gan_run / "training_summary.json").read_text())
    assert summary["family"] == "gan" and summary["steps"] == 3 and len(summary["history"]) == 3
    train = summary["data"]["train"]
    assert train["windows"] > 100 and train["tunes"] == train["tunes_used"] + train["tunes_skipped"]
    assert summary["samples"] and all(s["valid"] for s in summary["samples"])
    model = MusicGAN.from_pretrained(gan_run)
    assert {"reel", "jig"} <= set(model.config.rhythms) and "4/4" in model.config.meters


@pytest.mark.slow
def test_abcgen_generate_on_a_gan_folder(gan_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    result = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(gan_run), "--rhythm", "reel",
                             "--key", "D", "--meter", "4/4", "--num", "4", "--bars", "8", "--out", str(out)],
                            capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 of 4 tunes valid" in result.stdout
    files = sorted(out.glob("tune_*.abc"))
    assert len(files) == 4
    for path in files:
        abc = path.read_text()
        assert check_sample(abc).valid and abc2midi_check(abc) == [] and "K:D\n" in abc and "M:4/4\n" in abc and "R:reel\n" in abc
        assert abc.count("|") - abc.count("|]") == 7  # eight bars: seven bar lines and the final |]
    refused = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(gan_run), "--voices", "2",
                              "--out", str(tmp_path / "x")], capture_output=True, text=True, env=ENV, cwd=ROOT,
                             timeout=300)
    assert refused.returncode == 2 and "--voices" in refused.stderr


def test_gan_settings_are_validated() -> None:
    from abcgen.errors import ConfigError
    from abcgen.training.config import load_config

    cfg = load_config(ROOT / "train/configs/gan-cpu.yaml")  # no tokenizer: the GAN reads piano rolls
    assert (cfg.model.architecture, cfg.model.tokenizer, cfg.gan.loss) == ("gan", "", "wgan-gp")
    with pytest.raises(ConfigError) as error:
        load_config(ROOT / "train/configs/gan-cpu.yaml", ["gan.loss=wgan", "gan.steps_per_whole_note=12",
                                                          "gan.lowest_pitch=100", "checkpoint.resume=latest"])
    for key in ("gan.loss", "gan.steps_per_whole_note", "gan.lowest_pitch", "checkpoint.resume"):
        assert key in str(error.value)
