"""Classifier-free guidance on the control tokens (``abcgen.generation.guidance``) on tiny random models: the
guided loop against ``generate``, the unconditional branch, the grammar, LoRA, the other families, bad values."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_music_model_folder

import abcgen  # noqa: F401  -- registers the task
from abcgen.errors import ConfigError
from abcgen.generation import pipeline as pipeline_module
from abcgen.generation.guidance import GuidedGenerate, check_guidance, guided_sample
from abcgen.generation.pipeline import TASK
from abcgen.generation.sampling import check_sample
from abcgen.tokenization.prompt import SplitStats
from abcgen.training.data import _drop_conditions, tune_to_examples

LABELS = {"key": "D major", "meter": "6/8", "rhythm": "jig"}
HEADER = "X:1\nM:6/8\nL:1/8\nK:D\n"
REQUEST = {"key": "D", "meter": "6/8", "rhythm": "jig", "bars": 8}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_music_model_folder(tmp_path_factory.mktemp("guidance") / "model")


@pytest.fixture(scope="module")
def pipe(model_dir: Path):  # noqa: ANN201
    from transformers import pipeline

    return pipeline(TASK, model=str(model_dir))


def _control_ids(pipe) -> set[int]:  # noqa: ANN001
    """Every control token id of the tokenizer (``<key=D_major>``, ``<meter=6/8>``, ...)."""
    return {i for token, i in pipe.tokenizer.get_vocab().items() if token.startswith("<") and "=" in token}


def _prompts(pipe, rows: int = 4) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    fmt = pipe.prompt_format
    cond = fmt.prompt_ids(LABELS, HEADER)
    return torch.tensor([cond] * rows), torch.tensor([fmt.unconditional_prompt_ids(cond, LABELS)])


def _sample_kwargs(pipe) -> dict:  # noqa: ANN001
    return {"pad_token_id": pipe.tokenizer.pad_token_id, "eos_token_id": pipe.tokenizer.eos_token_id}


# --- the training side: what the unconditional branch was trained on -------------------------------------------


def test_training_drops_each_condition_independently_and_keeps_the_header(pipe) -> None:  # noqa: ANN001
    rng, stats = random.Random(0), SplitStats()
    kept = Counter(tuple(sorted(_drop_conditions(LABELS, 0.5, rng, stats))) for _ in range(4000))
    assert len(kept) == 8  # every subset of the three conditions occurs, all three dropped included
    assert all(0.10 < count / 4000 < 0.15 for count in kept.values()), kept  # 1/8 each: independent draws
    abc = HEADER + "dAF DFA|d2f e2d|]\n"
    (example,) = tune_to_examples(abc, LABELS, pipe.tokenizer, pipe.vocabulary, max_length=256,
                                  condition_dropout=1.0, rng=random.Random(0))
    fmt = pipe.prompt_format
    assert example.input_ids[: -1] == fmt.prompt_ids({}, abc)  # no control token, the header kept (then EOS)


# --- the unconditional prompt ------------------------------------------------------------------------------------


def test_the_unconditional_prompt_drops_the_prefix_and_keeps_the_header(pipe) -> None:  # noqa: ANN001
    fmt, controls = pipe.prompt_format, _control_ids(pipe)
    cond = fmt.prompt_ids(LABELS, HEADER)
    uncond = fmt.unconditional_prompt_ids(cond, LABELS)
    assert len(controls & set(cond)) == 3 and not controls & set(uncond)
    assert uncond == fmt.prompt_ids({}, HEADER) and cond[len(cond) - len(uncond) + 1:] == uncond[1:]
    with pytest.raises(ValueError, match="control prefix"):
        fmt.unconditional_prompt_ids(cond, {"key": "G major"})


def test_the_guided_forward_pass_holds_both_branches(pipe) -> None:  # noqa: ANN001
    """The batch the model sees: conditional rows, then the same prompts left-padded without the prefix."""
    seen: list[dict] = []
    hook = pipe.model.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs), with_kwargs=True)
    try:
        pipe(**REQUEST, num_return_sequences=2, seed=0, guidance_scale=2.0, max_new_tokens=40)
    finally:
        hook.remove()
    first = seen[0]
    ids, mask, positions = first["input_ids"], first["attention_mask"], first["position_ids"]
    assert ids.shape[0] == 4 and first["cache"] is not None
    header = pipe.prompt_format.decode(pipe.prompt_format.prompt_ids({}, HEADER))
    controls = _control_ids(pipe)
    for row in range(4):
        real = ids[row][mask[row].bool()].tolist()
        assert positions[row][mask[row].bool()].tolist() == list(range(len(real)))  # counted from the first token
        assert pipe.prompt_format.decode(real).endswith(header.strip() + "\n")  # the header in both branches
        assert bool(controls & set(real)) == (row < 2)  # control tokens in the conditional rows only
    assert not mask[2:, 0].any()  # the shorter unconditional rows are the padded ones
    assert all(step["input_ids"].shape == (4, 1) for step in seen[1:])  # one token per row and step after


# --- the loop against generate -----------------------------------------------------------------------------------


def test_scale_one_is_generate_token_for_token(pipe) -> None:  # noqa: ANN001
    ids, uncond = _prompts(pipe)
    for seed in range(4):
        torch.manual_seed(seed)
        plain = pipe.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.3,
                                    top_p=0.9, max_new_tokens=50, **_sample_kwargs(pipe))
        torch.manual_seed(seed)
        guided = guided_sample(pipe.model, ids, uncond, guidance_scale=1.0, temperature=1.3, top_p=0.9,
                               max_new_tokens=50, **_sample_kwargs(pipe))
        assert torch.equal(plain, guided), seed


def test_scale_zero_is_generate_on_the_unconditional_prompt(pipe) -> None:  # noqa: ANN001
    """s = 0 samples the unconditional rows alone: left padding, mask and positions are right."""
    ids, uncond = _prompts(pipe)
    for seed in range(3):
        torch.manual_seed(seed)
        alone = uncond.expand(4, -1)
        plain = pipe.model.generate(alone, attention_mask=torch.ones_like(alone), do_sample=True, max_new_tokens=50,
                                    **_sample_kwargs(pipe))
        torch.manual_seed(seed)
        guided = guided_sample(pipe.model, ids, uncond, guidance_scale=0.0, max_new_tokens=50, **_sample_kwargs(pipe))
        assert torch.equal(plain[:, uncond.shape[1]:], guided[:, ids.shape[1]:]), seed


def _always_guided(model, fmt, model_inputs, guidance_scale):  # noqa: ANN001, ANN202
    """``guided_generate`` without its ``s == 1`` short cut: the pipeline runs the guided loop at every scale."""
    prompt = model_inputs["input_ids"][0].tolist()
    return GuidedGenerate(model, fmt.unconditional_prompt_ids(prompt, model_inputs["labels"]), guidance_scale)


@pytest.mark.parametrize("grammar", ["legacy", "idiom"])
def test_the_pipeline_at_scale_one_through_the_loop_is_the_plain_pipeline(pipe, grammar: str,  # noqa: ANN001
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    plain = [t["abc"] for seed in range(2) for t in pipe(**REQUEST, num_return_sequences=3, seed=seed,
                                                          grammar=grammar, temperature=1.2)]
    monkeypatch.setattr(pipeline_module, "guided_generate", _always_guided)
    looped = [t["abc"] for seed in range(2) for t in pipe(**REQUEST, num_return_sequences=3, seed=seed,
                                                           grammar=grammar, temperature=1.2, guidance_scale=1.0)]
    assert looped == plain


# --- guidance on -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grammar", ["legacy", "idiom"])
def test_guided_tunes_differ_and_stay_valid(pipe, grammar: str) -> None:  # noqa: ANN001
    changed = False
    for seed in range(3):
        plain = pipe(**REQUEST, num_return_sequences=4, seed=seed, grammar=grammar)
        guided = pipe(**REQUEST, num_return_sequences=4, seed=seed, grammar=grammar, guidance_scale=3.0)
        changed |= [t["abc"] for t in plain] != [t["abc"] for t in guided]
        for tune in guided:
            check = check_sample(tune["abc"], num_bars=8)
            assert check.valid and tune["valid"], (check.problems, tune["abc"])
            assert tune["conditions"] == LABELS
    assert changed


def test_guided_decoding_through_lora(model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from abcgen.generation.pipeline import AbcGenerationPipeline

    torch.manual_seed(0)  # init_lora_weights=False: random B, so the adapter changes the logits
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                                      task_type="CAUSAL_LM")).eval()
    lora = AbcGenerationPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(model_dir))
    ids, uncond = _prompts(lora, rows=3)
    torch.manual_seed(5)
    plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=40,
                           **_sample_kwargs(lora))
    torch.manual_seed(5)
    assert torch.equal(plain, guided_sample(model, ids, uncond, guidance_scale=1.0, max_new_tokens=40,
                                            **_sample_kwargs(lora)))
    for tune in lora(**REQUEST, num_return_sequences=3, seed=1, guidance_scale=3.0):
        assert tune["valid"], (tune["problems"], tune["abc"])


def test_lstm_is_guided_and_the_vae_refused() -> None:
    from abcgen.models.lstm import MusicLSTM, MusicLSTMConfig
    from abcgen.models.vae import MusicVAE, MusicVaeConfig

    torch.manual_seed(0)
    lstm = MusicLSTM(MusicLSTMConfig(vocab_size=50, embedding_size=16, hidden_size=24, num_hidden_layers=2,
                                     dropout=0.0, pad_token_id=0, eos_token_id=1)).eval()
    ids, uncond = torch.tensor([[5, 6, 7, 8, 9, 10]] * 3), torch.tensor([[8, 9, 10]])
    assert check_guidance(lstm, 2) == 2.0
    for scale, prompt in ((1.0, ids), (0.0, uncond.expand(3, -1))):  # conditional rows; padded unconditional rows
        torch.manual_seed(3)
        plain = lstm.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, max_new_tokens=20,
                              pad_token_id=0, eos_token_id=1)
        torch.manual_seed(3)
        guided = guided_sample(lstm, ids, uncond, guidance_scale=scale, max_new_tokens=20, pad_token_id=0,
                               eos_token_id=1)
        assert torch.equal(plain[:, prompt.shape[1]:], guided[:, ids.shape[1]:]), scale
    vae = MusicVAE(MusicVaeConfig(vocab_size=64, embedding_size=8, encoder_hidden_size=8, decoder_hidden_size=8,
                                  latent_size=4, pad_token_id=0, eos_token_id=1, max_tokens=32))
    with pytest.raises(ConfigError, match="MusicVAE does not: leave guidance_scale at 1"):
        check_guidance(vae, 2.0)
    assert check_guidance(vae, 1) == 1.0


# --- bad values --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"guidance_scale": -1}, "guidance_scale=-1: give a number of 0 or more"),
    ({"guidance_scale": "x"}, "guidance_scale='x': give a number of 0 or more"),
    ({"guidance_scale": True}, "guidance_scale=True"),
    ({"guidance_scale": float("inf")}, "guidance_scale=inf"),
    ({"guidance_scale": 2.0, "voices": 2}, "works for one voice"),
])
def test_bad_guidance_is_a_one_line_error_before_generating(pipe, kwargs: dict, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=message) as error:
        pipe(**REQUEST, **kwargs)
    assert "\n" not in str(error.value)


def test_cli_flag_is_checked_and_passed(capsys: pytest.CaptureFixture[str]) -> None:
    from abcgen.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["generate", "--model", "m", "--out", "o", "--guidance-scale", "2.5"])
    assert args.guidance_scale == 2.5
    assert parser.parse_args(["generate", "--model", "m", "--out", "o"]).guidance_scale == 1.0
    for bad, message in (("-1", "'-1' must be a finite number of 0 or more"), ("x", "'x' is not a number"),
                         ("inf", "'inf' must be")):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["generate", "--model", "m", "--out", "o", "--guidance-scale", bad])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_cli_refuses_bad_guidance_in_one_line(model_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(model_dir), "--out",
                             str(tmp_path / "never"), "--guidance-scale", "-1"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "--guidance-scale" in result.stderr, result.stderr
    gan = tmp_path / "gan"  # what is_gan_folder reads: a MusicGAN has no control tokens to guide
    gan.mkdir()
    (gan / "config.json").write_text(json.dumps({"model_type": "abcgen_gan"}), encoding="utf-8")
    (gan / "model.safetensors").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(gan), "--out",
                             str(tmp_path / "never"), "--guidance-scale", "2"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "MusicGAN, which has no control tokens" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


@pytest.mark.slow
def test_cli_generates_guided_tunes(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    result = subprocess.run([sys.executable, "-m", "abcgen", "generate", "--model", str(model_dir), "--key", "D",
                             "--meter", "6/8", "--rhythm", "jig", "--bars", "8", "--num", "2", "--guidance-scale",
                             "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num"] == 2 and summary["valid"] == 2
