"""Preference alignment (train/align.py): the DPO loss by hand, the reward's validity gate and pairs, and the
script as users run it -- real subprocesses on a tiny model and a corpus of real tunes, killed and resumed,
and on two processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import _collection_tunes
from tiny_models import tiny_causal_lm, tiny_music_model_folder

from abcgen.evaluation.metrics import abc2midi_valid
from abcgen.evaluation.reward import RewardScorer, TuneReward, build_pairs, unique_bigram_shares
from abcgen.notation.piece import read_pieces
from abcgen.training.config import RewardSettings, load_config
from abcgen.training.preference import collate_pairs, completion_logps, dpo_loss

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# --- the loss ------------------------------------------------------------------------------------------

def test_dpo_loss_on_a_hand_computed_two_pair_example() -> None:
    # pair 1: chosen gained 1 nat over the reference, rejected lost 1: delta = 2
    # pair 2: chosen lost 1, rejected gained 1: delta = -2
    policy_chosen, policy_rejected = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -18.0])
    ref_chosen, ref_rejected = torch.tensor([-11.0, -19.0]), torch.tensor([-11.0, -19.0])
    beta = 0.5
    losses, rewards = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta)
    # -log sigmoid(beta * delta) = log(1 + exp(-beta * delta))
    assert losses.tolist() == pytest.approx([math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(1.0))])
    assert float(losses.mean()) == pytest.approx(0.813262, abs=1e-6)
    assert rewards["chosen"].tolist() == pytest.approx([0.5, -0.5])
    assert rewards["rejected"].tolist() == pytest.approx([-0.5, 0.5])
    hinge, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta, loss_type="hinge")
    assert hinge.tolist() == pytest.approx([0.0, 2.0])  # max(0, 1 - beta * delta)
    # IPO: log-ratios per token (chosen 2 and 4 tokens, rejected 1 and 2), target 1 / (2 beta) = 1
    ipo, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta, loss_type="ipo",
                      chosen_tokens=torch.tensor([2.0, 4.0]), rejected_tokens=torch.tensor([1.0, 2.0]))
    assert ipo.tolist() == pytest.approx([(0.5 + 1.0 - 1.0) ** 2, (-0.25 - 0.5 - 1.0) ** 2])
    # RPO: + sft_weight x the chosen tune's NLL per token: 10 / 2 and 20 / 4 nats
    rpo, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta, sft_weight=0.5,
                      chosen_tokens=torch.tensor([2.0, 4.0]), rejected_tokens=torch.tensor([1.0, 2.0]))
    assert rpo.tolist() == pytest.approx([float(losses[0]) + 0.5 * 5.0, float(losses[1]) + 0.5 * 5.0])
    with pytest.raises(ValueError, match="per token"):
        dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta, sft_weight=1.0)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta, loss_type="kto")


def test_completion_logps_sum_the_completion_tokens_only_and_a_step_prefers_chosen() -> None:
    model = tiny_causal_lm(vocab_size=40, tied=True)
    pairs = [{"prompt_ids": [1, 5, 6], "chosen_ids": [7, 8, 2], "rejected_ids": [9, 2]},
             {"prompt_ids": [1, 4], "chosen_ids": [10, 11, 12, 2], "rejected_ids": [13, 14, 2]}]
    batch = collate_pairs(pairs, pad_id=0)
    assert batch["input_ids"].shape == (4, 6)  # chosen rows first, then rejected, right-padded
    assert batch["completion_mask"][2].tolist() == [0, 0, 0, 1, 1, 0]
    logps, tokens = completion_logps(model, batch)
    assert tokens.tolist() == [3.0, 4.0, 2.0, 3.0]
    # by hand, row 0: log p(7 | 1 5 6) + log p(8 | 1 5 6 7) + log p(2 | ... 8)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([[1, 5, 6, 7, 8, 2]])).logits[0].float(), dim=-1)
    expected = sum(float(log_probs[position - 1, token]) for position, token in ((3, 7), (4, 8), (5, 2)))
    assert float(logps[0]) == pytest.approx(expected, abs=1e-5)

    reference = logps.detach()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        logps, _ = completion_logps(model, batch)
        losses, _ = dpo_loss(logps[:2], logps[2:], reference[:2], reference[2:], beta=0.1)
        optimizer.zero_grad()
        losses.mean().backward()
        optimizer.step()
    with torch.no_grad():
        after, _ = completion_logps(model, batch)
    # each chosen tune gained on its rejected one relative to the reference
    assert bool(((after[:2] - reference[:2]) - (after[2:] - reference[2:]) > 0).all())


def _align_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("align_script", ROOT / "train" / "align.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_fresh_pair_preference_is_the_policys_implicit_reward_on_unseen_pairs() -> None:
    from types import SimpleNamespace

    from peft import LoraConfig, get_peft_model

    script = _align_script()
    one_process = SimpleNamespace(process_index=0, num_processes=1)
    model = get_peft_model(tiny_causal_lm(vocab_size=40, tied=True),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    pairs = [{"prompt_ids": [1, 5, 6], "chosen_ids": [7, 8, 2], "rejected_ids": [9, 2]},
             {"prompt_ids": [1, 4], "chosen_ids": [10, 11, 12, 2], "rejected_ids": [13, 14, 2]},
             {"prompt_ids": [1, 3], "chosen_ids": [15, 2], "rejected_ids": [16, 17, 2]}]
    script.reference_logps(model, pairs, 0, 2, one_process)
    # a fresh adapter (LoRA's B is zero) is the reference: no pair is preferred yet, every margin is 0
    assert script.fresh_pair_preference(model, pairs, 0, 2, one_process, beta=0.1) == {"accuracy": 0.0, "margin": 0.0}
    assert script.fresh_pair_preference(model, [], 0, 2, one_process, beta=0.1) is None
    torch.manual_seed(1)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 2.0)
    fresh = script.fresh_pair_preference(model, pairs, 0, 2, one_process, beta=0.1)
    with torch.no_grad():  # by hand: beta x (chosen's log-ratio - rejected's log-ratio), pair by pair
        policy, _ = completion_logps(model, collate_pairs(pairs, pad_id=0))
    margins = [0.1 * ((float(policy[i]) - p["ref_chosen_logp"]) - (float(policy[i + 3]) - p["ref_rejected_logp"]))
               for i, p in enumerate(pairs)]
    assert any(m != 0 for m in margins)
    assert fresh == {"accuracy": round(sum(m > 0 for m in margins) / 3, 4), "margin": round(sum(margins) / 3, 4)}


# --- the reward and the pairs ------------------------------------------------------------------------------

def test_align_priors_false_generates_without_the_decoding_priors() -> None:
    """``align.priors: false`` turns every decoding prior off for the on-policy tunes (their log-ratios are the
    model's own); the default leaves the pipeline's defaults."""
    script = _align_script()
    config = ROOT / "train" / "configs" / "quickstart-align.yaml"
    assert script.prior_options(load_config(config, validate=False)) == {}
    plain = script.prior_options(load_config(config, ["align.priors=false"], validate=False))
    assert plain == script.NO_PRIORS and set(plain) == {"theory_prior", "opening_prior", "rhythm_prior",
                                                        "interval_prior", "unison_penalty"}
    assert not any(plain.values())


def _reward(total: float | None) -> TuneReward:
    return TuneReward(valid=total is not None, total=total)


def test_an_invalid_tune_is_never_chosen() -> None:
    rewards = [_reward(None), _reward(1.0), _reward(3.0),   # request 0: invalid worst, best valid chosen
               _reward(None), _reward(None),               # request 1: nothing valid: no pair
               _reward(2.0), _reward(2.05),                # request 2: margin 0.05 < 0.1: no pair
               _reward(1.0), _reward(2.0), _reward(0.5)]   # request 3: best vs worst valid
    outcome = build_pairs([[0, 1, 2], [3, 4], [5, 6], [7, 8, 9]], rewards, min_margin=0.1)
    assert outcome.pairs == [(2, 0), (8, 9)]
    assert outcome.skipped == {"no valid tune": 1, "margin below min_margin": 1}
    assert all(rewards[chosen].valid for chosen, _ in outcome.pairs)


def test_more_pairs_per_request_are_disjoint_and_ranked() -> None:
    # request 0: two invalid tunes are the two worst; request 1: the third pair's margin (2.0 vs 1.95) is too
    # small; request 2: three tunes give one pair, whatever is asked
    rewards = [_reward(3.0), _reward(None), _reward(1.0), _reward(None), _reward(2.0), _reward(0.5),
               _reward(4.0), _reward(1.0), _reward(2.0), _reward(3.0), _reward(0.0), _reward(1.95),
               _reward(2.0), _reward(1.0), _reward(0.0)]
    groups = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14]]
    outcome = build_pairs(groups, rewards, min_margin=0.1, pairs_per_request=3)
    assert outcome.pairs == [(0, 1), (4, 3), (2, 5), (6, 10), (9, 7), (12, 14)]
    assert outcome.skipped == {}
    for chosen, rejected in outcome.pairs:
        assert rewards[chosen].valid and (not rewards[rejected].valid or rewards[chosen].total > rewards[rejected].total)
    tunes = [i for pair in outcome.pairs for i in pair]
    assert len(tunes) == len(set(tunes))  # no tune in two pairs
    one = build_pairs(groups, rewards, min_margin=0.1)
    assert one.pairs == [(0, 1), (6, 10), (12, 14)]  # the default: the best against the worst only


def test_pairs_per_request_is_checked_against_the_samples() -> None:
    cfg = load_config(ROOT / "train" / "configs" / "quickstart-align.yaml",
                      ["align.pairs_per_request=5", "align.samples_per_request=8"], validate=False)
    problems = [p for p in cfg.problems() if "pairs_per_request" in p]
    assert problems == ["align.pairs_per_request=5 must be between 1 and samples_per_request / 2 = 4 (each pair "
                        "takes two tunes of its condition set); lower it or raise align.samples_per_request"]


def test_the_reward_gates_on_validity_and_scores_real_tunes() -> None:
    pieces = read_pieces(_collection_tunes("ryansMammoth", 90))
    tunes = [p.abc for p, peer in zip(pieces, abc2midi_valid(pieces), strict=True) if p.ok and peer]  # the gate's
    rows = [{"abc": t, "rhythm": ("jig", "reel")[i % 2]} for i, t in enumerate(tunes)]
    assert len(rows) > 41
    scorer = RewardScorer(rows[:40], RewardSettings(), seed=1)
    good = rows[-1]["abc"]  # not a training tune
    broken = good.replace("|", "", 3)  # bars run together: no longer the meter's length
    results = scorer.score([{"abc": good, "valid": True}, {"abc": broken, "valid": True},
                            {"abc": good, "valid": False, "problems": ["truncated"]}],
                           [{"key": "D major", "rhythm": rows[-1]["rhythm"]}] * 3)
    assert results[0].valid and results[0].total is not None
    assert set(results[0].terms) == {"key", "rhythm", "tonic_ending", "repetition", "repeated_notes", "diversity"}
    assert 0.0 <= results[0].terms["rhythm"] <= 1.0 and results[0].copy is not None
    assert not results[1].valid and results[1].total is None  # our bar check (or abc2midi) rejects it
    assert not results[2].valid and results[2].problems == ["truncated"]  # the pipeline's verdict is a gate too
    # a training tune itself is a copy: the penalty takes the copy_penalty off
    copied = scorer.score([{"abc": rows[0]["abc"], "valid": True}], [{"key": "D major"}])[0]
    assert copied.copy == pytest.approx(1.0) and copied.copied
    settings = RewardSettings()
    expected = sum(getattr(settings, k) * v for k, v in copied.terms.items() if v is not None) - settings.copy_penalty
    assert copied.total == pytest.approx(expected, abs=1e-5)


def test_diversity_counts_the_bar_bigrams_no_other_tune_has() -> None:
    a = "X:1\nM:4/4\nL:1/8\nK:D\nABcd efga|bagf edcB|ABcd efga|\n"
    b = "X:1\nM:4/4\nL:1/8\nK:D\nABcd efga|bagf edcB|DEFG ABcd|\n"
    shares = unique_bigram_shares(read_pieces([a, b]))
    # a: (1,2) shared with b, (2,1) its own; b: (1,2) shared, (2,3) its own
    assert shares == [pytest.approx(0.5), pytest.approx(0.5)]


# --- the script, as users run it ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A corpus of 80 real O'Neill's tunes and an untrained tiny model whose control vocabulary is the
    corpus's (so every request the run draws is one the model knows)."""
    from abcgen.controls import ControlVocabulary, condition_names
    from abcgen.corpus.build import BuildConfig, build_corpus

    root = tmp_path_factory.mktemp("align")
    source = root / "tunes.abc"
    source.write_text("\n\n".join(_collection_tunes("oneills1850", 80)) + "\n", encoding="utf-8")
    corpus = root / "corpus"
    build_corpus(BuildConfig(sources=[str(source)], out=corpus, workers=1, validation_fraction=0.1,
                             test_fraction=0.1), progress=False)
    model = tiny_music_model_folder(root / "model", vocab=ControlVocabulary.load(corpus))
    return {"root": root, "corpus": corpus, "model": model, "conditions": ",".join(condition_names())}


def _args(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [str(ROOT / "train" / "align.py"), "--config", str(ROOT / "train" / "configs" / "quickstart-align.yaml"),
            "--model.name_or_path", str(setup["model"]), "--data.corpus", str(setup["corpus"]),
            "--data.conditions", str(setup["conditions"]), "--lora.r", "4", "--optim.lr", "1e-2",
            "--optim.warmup_steps", "0", "--align.rounds", "3", "--align.requests_per_round", "3",
            "--align.samples_per_request", "2", "--align.max_bars", "4", "--align.pair_batch_size", "1",
            "--align.epochs_per_round", "1", "--align.min_margin", "0", "--align.diversity_floor", "0",
            "--checkpoint.output_dir", str(out), *extra]


def _align(setup: dict[str, Path], out: Path, *extra: str, launcher: list[str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run((launcher or [sys.executable]) + _args(setup, out, *extra), capture_output=True,
                            text=True, env=ENV, cwd=ROOT, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"align failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def _pairs(out: Path) -> list[str]:
    return [(folder / "pairs.jsonl").read_text() for folder in sorted((out / "rounds").iterdir())]


def _summary(out: Path) -> dict:
    return json.loads((out / "final" / "training_summary.json").read_text())


@pytest.fixture(scope="module")
def straight(setup: dict[str, Path]) -> Path:
    out = setup["root"] / "straight"
    _align(setup, out)
    return out


@pytest.mark.slow
def test_an_alignment_run_writes_pairs_reports_and_a_loadable_model(setup: dict[str, Path], straight: Path) -> None:
    from transformers import pipeline

    import abcgen  # noqa: F401  -- registers the abc-generation task

    summary = _summary(straight)
    assert [r["round"] for r in summary["rounds"]] == [1, 2, 3]
    for report in summary["rounds"]:
        assert report["tunes"] == report["valid"] + report["invalid"] == 6
        assert report["requests"] == report["paired_requests"] + sum(report["skipped"].values()) == 3
        assert report["paired_requests"] == report["pairs"]  # one pair per request by default
        assert report["dpo_steps"] == report["pairs"]
        if report["round"] > 1 and report["pairs"]:  # the earlier rounds' learning, on pairs not trained on yet
            assert 0.0 <= report["fresh_pairs"]["accuracy"] <= 1.0
        else:
            assert report["fresh_pairs"] is None
    assert summary["steps"] == sum(r["pairs"] for r in summary["rounds"]) > 0
    # the first update starts from the reference itself: every implicit reward beta * log-ratio is 0
    first = summary["history"][0]
    assert first["reward_margin"] == 0.0 and first["reward_accuracy"] == 0.0
    assert first["loss"] > math.log(2)  # log 2 of DPO plus the chosen tunes' NLL (the config's sft_weight 1)
    for line in _pairs(straight)[0].splitlines():
        pair = json.loads(line)
        assert pair["chosen"]["valid"] and pair["chosen"]["total"] is not None
        assert pair["chosen"]["abc"].startswith("X:") and pair["conditions"]["key"]
        assert pair["prompt_ids"] and pair["chosen_ids"] and pair["rejected_ids"]
    final = straight / "final"
    assert (final / "adapter" / "adapter_config.json").is_file() and (final / "control_vocabulary.json").is_file()
    tune = pipeline("abc-generation", model=str(final))(bars=4, num_return_sequences=1, seed=0)[0]
    assert tune["valid"], tune["problems"]


@pytest.mark.slow
def test_a_killed_alignment_resumes_to_the_same_pairs_and_losses(setup: dict[str, Path], straight: Path) -> None:
    killed = setup["root"] / "killed"
    process = subprocess.Popen([sys.executable, *_args(setup, killed)], env=ENV, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None and not (
            (killed / "checkpoints").is_dir() and any(p.name.startswith("step-") for p in (killed / "checkpoints").iterdir())):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "final").exists(), "the run finished before it could be killed"
    assert any(p.name.startswith("step-") for p in (killed / "checkpoints").iterdir())
    _align(setup, killed, "--checkpoint.resume", "latest")
    assert _pairs(killed) == _pairs(straight)  # the same tunes generated, scored and paired, round by round
    expected = [(h["round"], h["loss"]) for h in _summary(straight)["history"]]
    assert [(h["round"], h["loss"]) for h in _summary(killed)["history"]] == expected


@pytest.mark.slow
def test_two_processes_share_the_requests_and_pair_the_same_first_round(setup: dict[str, Path],
                                                                       straight: Path) -> None:
    # torchrun really starts two processes on CPU (gloo). Generation seeds depend on the request only, so
    # round 1 (before any update) pairs exactly what one process paired.
    out = setup["root"] / "ddp"
    _align(setup, out, "--align.rounds", "1",
           launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"])
    summary = _summary(out)
    assert summary["hardware"]["processes"] == 2
    assert _pairs(out)[0] == _pairs(straight)[0]
    assert summary["steps"] == math.ceil(summary["rounds"][0]["pairs"] / 2)  # two pairs a step, one per process


@pytest.mark.slow
def test_bad_alignment_settings_are_one_line_errors(setup: dict[str, Path]) -> None:
    out = setup["root"] / "bad"
    result = _align(setup, out, "--align.samples_per_request", "1", check=False)
    assert result.returncode == 2 and "align.samples_per_request=1" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = _align(setup, out, "--data.conditions", "key", check=False)
    assert result.returncode == 2 and "--data.conditions" in result.stderr and not out.exists()
    result = _align(setup, out, "--model.method", "full", check=False)
    assert result.returncode == 2 and "model.method=lora" in result.stderr
