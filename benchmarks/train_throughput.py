"""Training throughput: abcgen's fine-tuning loop against the ``transformers.Trainer`` + ``peft`` baseline.

One process, one run, one model shape, the same tunes for every set-up:

* **baseline** -- the set-ups of ``../shared/anchors/trainer_peft_baseline.py``, re-implemented here with
  the same settings (``Trainer``, LoRA r=16 alpha=32 on ``all-linear``, lr 2e-4, bf16 on CUDA, SDPA,
  ``dataloader_num_workers=0``): ``trainer_pad_b8`` (batch 8, dynamic padding: the tutorial default),
  ``trainer_pad_b64`` (batch 64) and ``trainer_naive_pack`` (rows of concatenated tunes that attend to
  each other, batch 4). The anchor is not imported: its model shape (a vocabulary of 1,000 on CPU), device
  and data (synthetic lengths) are fixed by module globals and its token counts include every non-pad
  token, so its set-ups are rebuilt here, with its settings, on the real data below.
* **abcgen** -- the step of ``train/finetune.py`` itself (imported by path, not shelled out):
  ``train_loader`` over ``pack_examples`` rows (``collate_packed``: position ids restart per tune, so tunes
  never attend to each other), ``train_step`` (``forward_kwargs`` + ``token_sum_cross_entropy`` +
  token-weighted accumulation), ``accelerator.clip_grad_norm_``, AdamW from ``make_optimizer`` and its
  schedule, LoRA through ``abcgen.training.model.apply_lora`` (the anchor's r=16, alpha=32, dropout 0 on
  the seven Llama projections = peft's ``all-linear``; the added music/control token rows trained through
  ``trainable_token_indices``, as a real fine-tune does). ``abcgen_pack`` is the fast profile,
  ``abcgen_pack_dropout`` the same with ``LoraSettings``' default dropout 0.05 (the shipped recipes'),
  ``abcgen_pack_no_token_rows`` without the added token rows (exactly the anchor's trainable set),
  ``abcgen_pack_gc_accum`` the memory profile (micro-batch 1, gradient accumulation 4, gradient
  checkpointing). The loss is the one finetune.py uses: full logits from the model, then the chunked
  ``token_sum_cross_entropy`` (``causal_lm_loss_from_hidden`` is not used by the loop, so not here).

Data: the train split of a corpus built from ``music21:oneills1850`` (or ``--corpus DIR``), tokenized by a
byte-level BPE trained on it (``train_base_tokenizer``, 2,048 tokens) extended with the shipped music
units and the corpus's control tokens (``build_music_tokenizer``); examples from ``build_examples``
(control prefix + tune + EOS, ``loss_on="tune"``, no condition dropout). Every set-up trains on the same
examples. Weights are random (``--shape tiny`` for CPUs, ``--shape llama-1b``: Llama-3.2-1B, vocabulary
128,256, tied head, for GPUs).

Measured per set-up: useful tokens/s (label tokens of real tune tokens after the causal shift: no padding,
no masked control prefix; the same count for every set-up), padding share (padding positions / all
positions), peak memory, and MFU = useful tokens/s x 4N / peak FLOP/s (N = parameters of the base model;
forward 2N + backward through frozen weights 2N per token, the anchor's convention), over ``--steps``
optimiser steps timed after ``--warmup`` untimed ones. Writes
``benchmarks/results/train_throughput_cpu.json`` (or ``_gpu_<shape>.json``)::

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --shape tiny
    python benchmarks/train_throughput.py --shape llama-1b --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import re
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _load import load_module  # noqa: E402  -- benchmarks/_load.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IGNORE_INDEX = -100

# Model shapes. ``vocab_size=None``: the music tokenizer's size padded to a multiple of 64 (abcgen's rule).
SHAPES: dict[str, dict[str, Any]] = {
    # the anchor's CPU smoke shape, on the real vocabulary
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=None, max_position_embeddings=4096, tie_word_embeddings=False),
    # Llama-3.2-1B (1.24 B parameters)
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                     tie_word_embeddings=True, rope_theta=500000.0),
}

# Per shape: the longest example (longer tunes are split at bar lines by build_examples; the anchor caps
# its lengths at 1,024), and the set-ups. On the tiny shape the packed rows are 512 tokens, not the
# anchor's 256-token CPU smoke block: real tunes here are ~235 tokens, so a 256-token row would hold one.
def _setups(row_length: int) -> list[dict[str, Any]]:
    """The same set-ups for every shape; only the packed row length changes."""
    pack = {"batch": 4, "row_length": row_length}
    return [
        {"name": "trainer_pad_b8", "kind": "trainer_pad", "batch": 8},
        {"name": "trainer_pad_b64", "kind": "trainer_pad", "batch": 64},
        {"name": "trainer_naive_pack", "kind": "trainer_pack", **pack},
        {"name": "abcgen_pack", "kind": "abcgen", **pack, "accum": 1},
        {"name": "abcgen_pack_dropout", "kind": "abcgen", **pack, "accum": 1, "lora_dropout": 0.05},
        {"name": "abcgen_pack_no_token_rows", "kind": "abcgen", **pack, "accum": 1, "train_new_tokens": False},
        {"name": "abcgen_pack_gc_accum", "kind": "abcgen", "batch": 1, "row_length": row_length, "accum": 4,
         "gradient_checkpointing": True},
    ]


SETUPS: dict[str, dict[str, Any]] = {
    "tiny": {"max_length": 512, "setups": _setups(512)},
    "llama-1b": {"max_length": 1024, "setups": _setups(4096)},
}
BASELINE = "trainer_naive_pack"  # the set-up issue 7's ratio is taken against
DEFAULT_STEPS = {"tiny": (30, 3), "llama-1b": (20, 5)}  # (timed steps, warm-up steps)

# Dense bf16 peak of the GPUs we expect (FLOP/s); others report MFU as null.
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}


# --- memory ------------------------------------------------------------------------------------------

class CpuPeakMemory:
    """Peak resident set size of this process while a set-up runs, minus its size when it started.

    Linux: the kernel's high-water mark (``VmHWM``), reset by writing 5 to ``/proc/self/clear_refs``, after
    ``malloc_trim`` returns freed memory to the system. Elsewhere: psutil RSS sampled every 2 ms."""

    def __init__(self) -> None:
        self.method = "unavailable"
        self._base = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _status(key: str) -> int | None:
        try:
            text = Path("/proc/self/status").read_text()
        except OSError:
            return None
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else None

    def __enter__(self) -> CpuPeakMemory:
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")
            rss = self._status("VmRSS")
            if rss is None or self._status("VmHWM") is None:
                raise OSError("no VmRSS/VmHWM")
            self.method = "peak RSS delta: VmHWM (reset via /proc/self/clear_refs) - VmRSS at set-up start"
            self._base = rss
        except OSError:
            try:
                import psutil
            except ImportError:
                return self
            process = psutil.Process()
            self.method = "peak RSS delta: psutil RSS sampled every 2 ms - RSS at set-up start"
            self._base = self._peak = process.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(0.002):
                    self._peak = max(self._peak, process.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        elif self.method != "unavailable":
            self._peak = self._status("VmHWM") or 0

    @property
    def delta_bytes(self) -> int | None:
        return None if self.method == "unavailable" else max(0, self._peak - self._base)


# --- data --------------------------------------------------------------------------------------------

def prepare_data(corpus: Path | None, workdir: Path, max_length: int) -> dict[str, Any]:
    """Corpus (built from music21:oneills1850 unless given), music tokenizer, examples of the train split."""
    from abcgen.controls import ControlVocabulary
    from abcgen.corpus.build import BuildConfig, build_corpus, load_corpus
    from abcgen.tokenization.base_bpe import train_base_tokenizer
    from abcgen.tokenization.extend import build_music_tokenizer
    from abcgen.tokenization.units import load_default_spec
    from abcgen.training.data import build_examples

    started = time.perf_counter()
    source = str(corpus) if corpus else "music21:oneills1850"
    if corpus is None:
        corpus = workdir / "corpus"
        build_corpus(BuildConfig(sources=["music21:oneills1850"], out=corpus, workers=1), progress=False)
    train = load_corpus(corpus)["train"]
    base = train_base_tokenizer(train["abc"], workdir / "base_tokenizer", vocab_size=2048)
    vocab = ControlVocabulary.load(corpus)
    tokenizer = build_music_tokenizer(base, load_default_spec(), vocab)
    examples, stats = build_examples(train, tokenizer, vocab, max_length=max_length, loss_on="tune",
                                     condition_dropout=0.0, seed=0)
    lengths = sorted(len(e) for e in examples)
    return {
        "examples": examples,
        "tokenizer": tokenizer,
        "new_token_ids": list(range(len(base), len(tokenizer))),
        "summary": {
            "source": source,
            "split": "train",
            "tunes": stats["tunes"],
            "examples": stats["examples"],
            "split_tunes": stats["split_tunes"],
            "tokens": stats["tokens"],
            "label_tokens": stats["label_tokens"],
            "example_tokens": {"median": lengths[len(lengths) // 2], "p90": lengths[int(0.9 * len(lengths))],
                               "p99": lengths[int(0.99 * len(lengths))], "max": lengths[-1],
                               "mean": round(sum(lengths) / len(lengths), 1)},
            "max_length": max_length,
            "loss_on": "tune",
            "condition_dropout": 0.0,
            "tokenizer": {"base": "byte-level BPE trained on the split (2,048 tokens)", "size": len(tokenizer),
                          "added_tokens": len(tokenizer) - len(base)},
            "seconds": round(time.perf_counter() - started, 1),
        },
    }


def count_label_tokens(labels: torch.Tensor) -> int:
    """Label tokens after the causal shift (what the loss trains on): ``(labels[:, 1:] != -100).sum()``."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


# --- model -------------------------------------------------------------------------------------------

def model_config(shape: str, vocab_size: int) -> Any:
    from transformers import LlamaConfig

    settings = dict(SHAPES[shape])
    if settings["vocab_size"] is None:
        settings["vocab_size"] = -(-vocab_size // 64) * 64
    return LlamaConfig(**settings)


def make_model(config: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """A random-init Llama of ``config`` on ``device`` (the same seed for every set-up), SDPA attention."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")


def count_params(config: Any) -> int:
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


# --- baseline: Trainer + peft ----------------------------------------------------------------------

class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: Sequence[dict[str, torch.Tensor]]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.rows[index]


def example_rows(examples: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
    return [{"input_ids": torch.tensor(e.input_ids), "labels": torch.tensor(e.labels)} for e in examples]


def naive_pack_rows(examples: Sequence[Any], block: int) -> list[dict[str, torch.Tensor]]:
    """The anchor's ``Packed``: every example concatenated in order, cut into rows of ``block`` tokens."""
    ids = torch.tensor([t for e in examples for t in e.input_ids])
    labels = torch.tensor([t for e in examples for t in e.labels])
    n = len(ids) // block
    return [{"input_ids": i, "labels": lab}
            for i, lab in zip(ids[: n * block].view(n, block), labels[: n * block].view(n, block), strict=True)]


def make_pad_collate(pad_id: int) -> Callable[[list[dict[str, torch.Tensor]]], dict[str, torch.Tensor]]:
    """The anchor's ``pad_collate`` (right padding to the longest row, attention mask), with the examples'
    own labels (control prefix masked) instead of every non-pad token."""

    def pad_collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        longest = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        att = torch.zeros_like(ids)
        labels = torch.full_like(ids, IGNORE_INDEX)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], att[i, :n], labels[i, :n] = b["input_ids"], 1, b["labels"]
        return {"input_ids": ids, "attention_mask": att, "labels": labels}

    return pad_collate


def packed_collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The anchor's ``packed_collate``: stacked rows, no mask, no position ids (tunes attend to each other)."""
    return {"input_ids": torch.stack([b["input_ids"] for b in batch]),
            "labels": torch.stack([b["labels"] for b in batch])}


class CountingCollate:
    """Counts, per batch, useful label tokens, all positions and padding positions (as the anchor's)."""

    def __init__(self, fn: Callable[[list[dict[str, torch.Tensor]]], dict[str, torch.Tensor]]) -> None:
        self.fn = fn
        self.useful: list[int] = []
        self.positions: list[int] = []
        self.padding: list[int] = []

    def __call__(self, batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        out = self.fn(batch)
        self.useful.append(count_label_tokens(out["labels"]))
        self.positions.append(out["input_ids"].numel())
        mask = out.get("attention_mask")
        self.padding.append(0 if mask is None else int((mask == 0).sum()))
        return out


def run_trainer(setup: dict[str, Any], rows: list[dict[str, torch.Tensor]], collate: Callable[..., Any],
                config: Any, device: torch.device, dtype: torch.dtype, steps: int, warmup: int,
                workdir: Path) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    cuda = device.type == "cuda"

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.t0: float | None = None
            self.t1: float | None = None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == warmup:
                if cuda:
                    torch.cuda.synchronize()
                self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.t1 = time.perf_counter()

    model = make_model(config, device, dtype)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    counting, clock = CountingCollate(collate), Clock()
    args = TrainingArguments(
        output_dir=str(workdir / f"trainer_{setup['name']}"), per_device_train_batch_size=setup["batch"],
        max_steps=warmup + steps, learning_rate=2e-4, bf16=cuda and dtype == torch.bfloat16, logging_steps=1000,
        save_strategy="no", report_to="none", dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=True, use_cpu=not cuda,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Rows(rows), data_collator=counting, callbacks=[clock])
    trainer.train()
    assert clock.t0 is not None and clock.t1 is not None
    # Collate calls may run a batch ahead of the steps (prefetch); batch i is step i either way.
    timed = slice(warmup, warmup + steps)
    result = {
        "optimizer": f"Trainer default ({args.optim}), linear schedule, max_grad_norm {args.max_grad_norm}",
        "lora": "r=16, alpha=32, dropout 0, target_modules=all-linear (anchor)",
        "seconds": clock.t1 - clock.t0,
        "useful_tokens": sum(counting.useful[timed]),
        "positions": sum(counting.positions[timed]),
        "padding_positions": sum(counting.padding[timed]),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    del trainer, model
    return result


# --- abcgen's loop -----------------------------------------------------------------------------------

def load_finetune() -> Any:
    """``train/finetune.py`` as a module (it is a script, not a package)."""
    return load_module('abcgen_train_finetune', 'train/finetune.py')


def run_abcgen(setup: dict[str, Any], examples: Sequence[Any], new_token_ids: list[int], pad_id: int,
               config: Any, device: torch.device, dtype: torch.dtype, steps: int, warmup: int,
               workdir: Path) -> dict[str, Any]:
    from accelerate import Accelerator

    from abcgen.training.config import LoraSettings, TrainConfig
    from abcgen.training.data import pack_examples, packing_stats
    from abcgen.training.model import apply_lora

    finetune = load_finetune()
    cuda = device.type == "cuda"
    accum = setup["accum"]
    cfg = TrainConfig()
    cfg.optim.micro_batch_size = setup["batch"]
    cfg.optim.grad_accum_steps = accum
    cfg.optim.max_steps = warmup + steps
    cfg.optim.warmup_steps = min(cfg.optim.warmup_steps, warmup + steps - 1)
    cfg.optim.fused = cuda  # train/configs/llama-3.2-1b-lora.yaml sets it; make_optimizer ignores it off CUDA
    cfg.logging.tensorboard = False
    cfg.checkpoint.output_dir = str(workdir / f"abcgen_{setup['name']}")
    # What `accelerate launch --config_file train/accelerate/{single-gpu,cpu}.yaml` gives finetune.py.
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if dtype == torch.bfloat16 else "no")

    rows = pack_examples(examples, setup["row_length"], seed=cfg.optim.seed, pad_id=pad_id)
    model = make_model(config, device, dtype)
    if setup.get("gradient_checkpointing"):  # as abcgen.training.model.load_model does
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    # The anchor's LoRA hyper-parameters (r=16, alpha=32, dropout 0) unless the set-up says otherwise:
    # LoraSettings' default dropout of 0.05 is measured as its own set-up.
    lora = LoraSettings(r=16, alpha=32, dropout=setup.get("lora_dropout", 0.0),
                        train_new_tokens=setup.get("train_new_tokens", True))
    cfg.lora = lora
    model = apply_lora(model, lora, new_token_ids)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer, scheduler = finetune.make_optimizer(cfg, model)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()

    # The loop of finetune.main, minus logging, evaluation and checkpoints.
    batches_per_epoch = len(rows) // cfg.optim.micro_batch_size
    if batches_per_epoch < accum:
        raise SystemExit(f"{len(rows)} packed rows are too few for {setup['name']}")
    step, epoch, useful, positions, t0 = 0, 0, 0, 0, 0.0
    padding = torch.zeros((), dtype=torch.long, device=accelerator.device)
    losses: list[float] = []
    while step < cfg.optim.max_steps:
        iterator = iter(finetune.train_loader(cfg, rows, epoch, accelerator))
        batch_in_epoch = 0
        while step < cfg.optim.max_steps and batch_in_epoch + accum <= batches_per_epoch:
            if step == warmup:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            micro_batches = [next(iterator) for _ in range(accum)]
            batch_in_epoch += accum
            record = finetune.optimizer_step(model, optimizer, scheduler, micro_batches, accelerator,
                                             cfg.optim.max_grad_norm)
            step += 1
            tokens = record["tokens"]
            losses.append(record["loss"])
            if step > warmup:
                useful += tokens
                for batch in micro_batches:
                    positions += batch["input_ids"].numel()
                    padding += (batch["input_ids"] == pad_id).sum()  # no sync: read once at the end
        epoch += 1
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    result = {
        "optimizer": f"AdamW from finetune.make_optimizer (fused={cfg.optim.fused and cuda}), "
                     f"{cfg.optim.schedule} schedule, max_grad_norm {cfg.optim.max_grad_norm}",
        "lora": (f"abcgen apply_lora: r={cfg.lora.r}, alpha={cfg.lora.alpha}, dropout {cfg.lora.dropout}, "
                 f"{', '.join(cfg.lora.target_modules)}; "
                 + (f"{len(new_token_ids)} added token rows trained" if lora.train_new_tokens
                    else "added token rows frozen (the anchor's trainable set)")),
        "grad_accum_steps": accum,
        "gradient_checkpointing": bool(setup.get("gradient_checkpointing")),
        "mixed_precision": accelerator.mixed_precision,
        "seconds": seconds,
        "useful_tokens": useful,
        "positions": positions,
        "padding_positions": int(padding),
        "trainable_params": trainable,
        "packing": {k: round(v, 4) if isinstance(v, float) else v for k, v in packing_stats(rows).items()},
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
    }
    del model, optimizer, scheduler, accelerator
    return result


# --- driver ------------------------------------------------------------------------------------------

def peak_flops(device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
    """Peak FLOP/s for MFU: the dense bf16 peak of known GPUs; on CPU the measured fp32 GEMM rate."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAK_BF16.items():
            if key in name and dtype == torch.bfloat16:
                return value, f"nominal dense bf16 peak of {key} ({value / 1e12:.0f} TFLOP/s)"
        return None, f"no nominal peak known for {name} in {dtype}"
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = math.inf
    for _ in range(6):
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / 4)
    rate = 2 * 1024**3 / best
    return rate, (f"measured, not nominal: fp32 torch.mm 1024x1024 on {torch.get_num_threads()} thread(s), "
                  f"best of 6 ({rate / 1e9:.1f} GFLOP/s)")


def environment(device: torch.device) -> dict[str, Any]:
    import accelerate
    import peft
    import transformers

    cpu_model = None
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu_model = match.group(1).strip() if match else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "platform": platform.platform(),
    }


def reset_accelerate_state() -> None:
    """Trainer and the abcgen loop each create an Accelerator; accelerate's state is process-wide, so
    clear it between set-ups (e.g. the Trainer's bf16 setting must not leak into the next set-up)."""
    from accelerate.state import AcceleratorState, GradientState

    with contextlib.suppress(AttributeError):
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps timed (default: tiny 30, llama-1b 20)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: tiny 3, llama-1b 5)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus folder (abcgen data build); "
                        "default: build music21:oneills1850 in a temporary folder")
    parser.add_argument("--setups", default="", help="comma-separated subset of set-up names (default: all)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    steps = args.steps if args.steps is not None else DEFAULT_STEPS[args.shape][0]
    warmup = args.warmup if args.warmup is not None else DEFAULT_STEPS[args.shape][1]
    if steps < 1 or warmup < 1:
        parser.error("--steps and --warmup must be >= 1 (the first step is never timed)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    out = args.out or RESULTS / ("train_throughput_cpu.json" if device.type == "cpu"
                                 else f"train_throughput_gpu_{args.shape}.json")
    plan = SETUPS[args.shape]
    wanted = [s for s in args.setups.split(",") if s]
    unknown = [s for s in wanted if s not in {p["name"] for p in plan["setups"]}]
    if unknown:
        parser.error(f"unknown set-ups {unknown}; choose from {[p['name'] for p in plan['setups']]}")
    setups = [p for p in plan["setups"] if not wanted or p["name"] in wanted]
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="abcgen_train_throughput_") as tmp:
        workdir = Path(tmp)
        data = prepare_data(args.corpus, workdir, plan["max_length"])
        print(json.dumps({"data": data["summary"]}), flush=True)
        tokenizer = data["tokenizer"]
        pad_id = tokenizer.pad_token_id
        config = model_config(args.shape, len(tokenizer))
        n_params = count_params(config)
        flops_peak, flops_source = peak_flops(device, dtype)
        for setup in setups:
            reset_accelerate_state()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            memory = CpuPeakMemory() if device.type == "cpu" else contextlib.nullcontext()
            error = None
            try:
                with memory:
                    if setup["kind"] == "abcgen":
                        r = run_abcgen(setup, data["examples"], data["new_token_ids"], pad_id, config, device, dtype,
                                       steps, warmup, workdir)
                    elif setup["kind"] == "trainer_pad":
                        r = run_trainer(setup, example_rows(data["examples"]), make_pad_collate(pad_id), config,
                                        device, dtype, steps, warmup, workdir)
                    else:
                        r = run_trainer(setup, naive_pack_rows(data["examples"], setup["row_length"]),
                                        packed_collate, config, device, dtype, steps, warmup, workdir)
            except torch.cuda.OutOfMemoryError as exc:  # e.g. batch 64 of long tunes on a small GPU
                error, r = f"CUDA out of memory: {str(exc).splitlines()[0]}", {}
            gc.collect()
            entry: dict[str, Any] = {"setup": setup["name"], **{k: v for k, v in setup.items() if k != "name"}}
            if error:
                entry["error"] = error
            else:
                seconds = r.pop("seconds")
                tok_s = r["useful_tokens"] / seconds
                entry.update({
                    "steps_timed": steps,
                    "warmup_steps": warmup,
                    "seconds": round(seconds, 3),
                    "useful_tokens_per_s": round(tok_s, 1),
                    "padding_share": round(r["padding_positions"] / r["positions"], 4) if r["positions"] else None,
                    "positions_per_s": round(r["positions"] / seconds, 1),
                    "mfu_4N": round(tok_s * 4 * n_params / flops_peak, 5) if flops_peak else None,
                    "mfu_6N_equiv": round(tok_s * 6 * n_params / flops_peak, 5) if flops_peak else None,
                    **r,
                })
            if device.type == "cuda":
                entry["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
                entry["peak_memory_method"] = "torch.cuda.max_memory_allocated (reset before the set-up)"
                torch.cuda.empty_cache()
            else:
                delta = memory.delta_bytes
                entry["peak_memory_gb"] = round(delta / 1e9, 3) if delta is not None else None
                entry["peak_memory_method"] = memory.method
            results.append(entry)
            print(json.dumps({k: entry.get(k) for k in ("setup", "useful_tokens_per_s", "padding_share",
                                                           "peak_memory_gb", "mfu_4N", "error")}), flush=True)

    by_name = {r["setup"]: r for r in results if "useful_tokens_per_s" in r}
    ratios = {f"{a}/{b}": round(by_name[a]["useful_tokens_per_s"] / by_name[b]["useful_tokens_per_s"], 2)
              for a in by_name if a.startswith("abcgen") for b in by_name if b.startswith("trainer")}
    command = "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " + command
    payload = {
        "benchmark": "train_throughput",
        "command": command.strip(),
        "environment": environment(device),
        "shape": args.shape,
        "model": {"config": {k: v for k, v in SHAPES[args.shape].items() if k != "vocab_size"}
                  | {"vocab_size": config.vocab_size}, "params": n_params,
                  "dtype": str(dtype).removeprefix("torch."), "attn_implementation": "sdpa", "weights": "random"},
        "data": data["summary"],
        "conventions": {
            "useful_tokens": "label tokens after the causal shift that are real tune tokens (no padding, no "
                             "masked control prefix, never the first token of an example); the same count "
                             "for every set-up. trainer_naive_pack also trains across tune boundaries "
                             "(tunes attend to each other); those targets are counted as useful too",
            "padding_share": "padding positions / all positions in the timed batches",
            "mfu": "useful tokens/s x 4N / peak FLOP/s, N = parameters of the base model (embeddings "
                   "included, a tied head once): forward 2N + backward through frozen weights 2N. "
                   "mfu_6N_equiv uses 6N. Attention FLOPs are not counted",
            "peak_flops": flops_peak,
            "peak_flops_source": flops_source,
            "timing": "wall time of the timed optimiser steps, after the warm-up steps (CUDA synchronised)",
            "baseline": "re-implementation of ../shared/anchors/trainer_peft_baseline.py set-ups on this data",
        },
        "setups": results,
        "ratios_useful_tokens_per_s": ratios,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({"ratios": ratios, "out": str(out), "wall_seconds": payload["wall_seconds"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
