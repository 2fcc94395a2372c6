"""Training throughput: abcgen's fine-tuning loop against the ``transformers.Trainer`` + ``peft`` baseline.

One process, one run, one model shape, the same examples for every set-up (issue 7):

* **baseline** -- the set-ups of ``../shared/anchors/trainer_peft_baseline.py``, re-implemented here with
  the same settings (``Trainer``, LoRA r=16 alpha=32 on ``all-linear``, lr 2e-4, bf16 on CUDA, SDPA,
  ``dataloader_num_workers=0``): ``trainer_pad_b8`` (batch 8, dynamic padding: the tutorial default),
  ``trainer_pad_b64`` (batch 64) and ``trainer_naive_pack`` (rows of concatenated tunes that attend to
  each other, batch 4; the set-up issue 7's ratio is taken against). The anchor is not imported: its model
  shape, device and data are fixed by module globals, so its set-ups are rebuilt here on the data below.
* **abcgen** -- the step of ``train/finetune.py`` itself (imported by path, not shelled out): its
  ``check_speed_settings``, ``train_loader`` over ``pack_examples`` rows (tunes isolated), ``optimizer_step``
  (``model_token_loss`` + token-weighted accumulation + clipping), ``make_optimizer``, with
  ``abcgen.training.model.apply_lora`` (r=16, alpha=32, dropout 0 on the seven Llama projections = peft's
  ``all-linear``; the added music/control token rows trained through ``trainable_token_indices``) and
  ``abcgen.training.speed.compile_model``. Profiles:

  - ``abcgen_fast``: bf16 autocast, isolated packing by the fastest path here (``torch_varlen`` on CUDA
    with torch >= 2.10, else ``flex_attention``; ``sdpa`` with position ids on CPU), regional
    ``torch.compile``, ``loss_impl=hidden`` (chunks of 4,096 positions), fused AdamW, pinned memory and
    2 loader workers on CUDA; 4 rows a step (the naive-packing baseline's batch).
  - ``abcgen_memory``: the same, one row per micro-batch, 4 micro-batches a step (16,384 tokens per
    optimiser step on the 1B shape), loss chunks of 1,024 positions; ``abcgen_memory_gc`` adds
    activation checkpointing.
  - ``abcgen_default``: the loop with the config's defaults (sdpa + position ids, full logits, no
    compile, plain AdamW): what the switches are measured against.
  - ``abcgen_fast_flex`` / ``abcgen_fast_sdpa`` (CUDA only): the fast profile on the other attention paths.

Data (``--data``): ``corpus`` builds the train split of ``music21:oneills1850`` (or ``--corpus DIR``) and
tokenizes it (byte-level BPE trained on it, 2,048 tokens, + the shipped music units and the controls);
``lengths`` (the default for ``--shape llama-1b``, and what the GPU check uses: no corpus build, no
datasets/music21 on the GPU machine) reads ``benchmarks/data/abc_example_lengths.json`` -- the length and
masked-prefix length of every example of the ``music21:all`` train split, written by ``--write-lengths``
with the same tokenization -- and fills the examples with seeded random token ids. Real lengths rather
than the anchor's log-normal draw: padding, packing and useful-token counts depend on the length
distribution (its long tail above all), not on the ids, which cannot matter to random weights.

Measured per set-up: useful tokens/s (label tokens after the causal shift: no padding, no masked
control prefix; the same count for every set-up), padding share, peak memory (CUDA:
``torch.cuda.max_memory_allocated`` reset before the set-up, with the memory already allocated when it
started; CPU: peak RSS delta), MFU = useful tokens/s x 4N / peak FLOP/s (N = parameters of the base
model, the anchor's convention), warm-up seconds (compilation happens there), and the first step's loss
and gradient norm: every abcgen set-up starts from the same weights on the same rows, so those must agree
(``consistency`` in the JSON) whatever the attention path, loss implementation or compilation. The JSON
is rewritten after every set-up, so a run cut short keeps what it measured; ``--time-budget`` skips the
set-ups that would not fit. Writes ``benchmarks/results/train_throughput_cpu.json`` (or
``train_throughput_gpu_<shape>.json``)::

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py --shape tiny
    python benchmarks/train_throughput.py --shape llama-1b --device cuda --time-budget 210
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
LENGTHS_FILE = ROOT / "benchmarks" / "data" / "abc_example_lengths.json"
IGNORE_INDEX = -100
EXAMPLE_MAX_LENGTH = 1024  # longest example; longer tunes are split at bar lines (the anchor caps at 1,024)

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
ROW_LENGTH = {"tiny": 1024, "llama-1b": 4096}  # tokens per packed row
DEFAULT_STEPS = {"tiny": (20, 3), "llama-1b": (10, 3)}  # (timed steps, warm-up steps)
QUICK_STEPS = (2, 1)
QUICK_EXAMPLES = 600
BASELINE = "trainer_naive_pack"  # the set-up issue 7's ratio is taken against


def plan(row_length: int) -> list[dict[str, Any]]:
    """The set-ups in the order they run: what issue 7 asks for first (a time budget cuts the tail).
    ``attn="best"`` is resolved per device (``best_attention``); ``devices`` limits a set-up to some."""
    fast = {"kind": "abcgen", "batch": 4, "row_length": row_length, "accum": 1, "attn": "best",
            "compile": "regional", "loss_impl": "hidden", "loss_chunk_size": 4096, "fused": True,
            "cuda_loader_workers": 2}
    return [
        {"name": "trainer_naive_pack", "kind": "trainer_pack", "batch": 4, "row_length": row_length},
        {"name": "abcgen_fast", **fast},
        {"name": "abcgen_memory", **fast, "batch": 1, "accum": 4, "loss_chunk_size": 1024},
        {"name": "trainer_pad_b8", "kind": "trainer_pad", "batch": 8},
        {"name": "trainer_pad_b64", "kind": "trainer_pad", "batch": 64},
        {"name": "abcgen_default", "kind": "abcgen", "batch": 4, "row_length": row_length, "accum": 1,
         "attn": "sdpa", "compile": "none", "loss_impl": "logits", "loss_chunk_size": 1024, "fused": False},
        {"name": "abcgen_memory_gc", **fast, "batch": 1, "accum": 4, "loss_chunk_size": 1024,
         "gradient_checkpointing": True},
        {"name": "abcgen_fast_flex", **fast, "attn": "flex_attention", "devices": ("cuda",)},
        {"name": "abcgen_fast_sdpa", **fast, "attn": "sdpa", "devices": ("cuda",)},
    ]


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

def tokenized_corpus(corpus: Path | None, source: str, workdir: Path) -> dict[str, Any]:
    """The train split of ``corpus`` (built from ``source`` unless given), tokenized as abcgen trains on it:
    examples (``build_examples``, control prefix masked, no condition dropout) and the music tokenizer."""
    from abcgen.controls import ControlVocabulary
    from abcgen.corpus.build import BuildConfig, build_corpus, load_corpus
    from abcgen.tokenization.base_bpe import train_base_tokenizer
    from abcgen.tokenization.extend import build_music_tokenizer
    from abcgen.tokenization.units import load_default_spec
    from abcgen.training.data import build_examples

    started = time.perf_counter()
    if corpus is None:
        corpus = workdir / "corpus"
        build_corpus(BuildConfig(sources=[source], out=corpus, workers=min(2, os.cpu_count() or 1)), progress=False)
    else:
        source = str(corpus)
    train = load_corpus(corpus)["train"]
    base = train_base_tokenizer(train["abc"], workdir / "base_tokenizer", vocab_size=2048)
    vocab = ControlVocabulary.load(corpus)
    tokenizer = build_music_tokenizer(base, load_default_spec(), vocab)
    examples, stats = build_examples(train, tokenizer, vocab, max_length=EXAMPLE_MAX_LENGTH, loss_on="tune",
                                     condition_dropout=0.0, seed=0)
    return {
        "examples": examples,
        "pad_id": tokenizer.pad_token_id,
        "tokenizer_size": len(tokenizer),
        "new_token_ids": list(range(len(base), len(tokenizer))),
        "summary": {
            "kind": "corpus: real token ids",
            "source": source,
            "split": "train",
            **{k: stats[k] for k in ("tunes", "examples", "split_tunes")},
            "max_length": EXAMPLE_MAX_LENGTH,
            "loss_on": "tune",
            "condition_dropout": 0.0,
            "tokenizer": {"base": "byte-level BPE trained on the split (2,048 tokens) + the shipped music units "
                                  "and the corpus's control tokens", "size": len(tokenizer),
                          "added_tokens": len(tokenizer) - len(base)},
            "seconds": round(time.perf_counter() - started, 1),
        },
    }


def _masked_prefix(labels: Sequence[int]) -> int:
    """Leading positions without a label; abcgen examples label every position after them."""
    prefix = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
    if any(label == IGNORE_INDEX for label in labels[prefix:]):
        raise ValueError("an example with a label hole after its prefix: its layout cannot be stored as lengths")
    return prefix


def write_lengths(path: Path, corpus: Path | None, workdir: Path) -> dict[str, Any]:
    """``benchmarks/data/abc_example_lengths.json``: ``[length, masked prefix]`` of every example of the
    ``music21:all`` train split (or ``corpus``), tokenized as ``tokenized_corpus`` does."""
    data = tokenized_corpus(corpus, "music21:all", workdir)
    pairs = [[len(e), _masked_prefix(e.labels)] for e in data["examples"]]
    summary = {k: v for k, v in data["summary"].items() if k not in ("kind", "seconds")}
    payload = {
        "what": "per example of the train split: [tokens, leading tokens without a label (BOS + control "
                "prefix, or a continuation chunk's repeated context)]; every later token has a label",
        "command": "python benchmarks/train_throughput.py --write-lengths",
        **summary,
        "lengths": pairs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # one example per line would be 10,000 lines: pairs are written 16 to a line
    lines = [", ".join(json.dumps(p) for p in pairs[i:i + 16]) for i in range(0, len(pairs), 16)]
    head = json.dumps({k: v for k, v in payload.items() if k != "lengths"}, indent=1)[:-2]
    path.write_text(head + ',\n "lengths": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n", encoding="utf-8")
    return payload


def length_data(path: Path, vocab_ids: int, added_tokens: int | None, limit: int | None) -> dict[str, Any]:
    """Examples with the stored lengths and label layout, filled with seeded random ids in ``[1, vocab_ids)``
    (0 is the pad id, never drawn, so padding can be counted by id). ``added_tokens`` rows at the top of
    the id range play the added music/control tokens (default: the stored tokenizer's count)."""
    from abcgen.training.data import Example

    stored = json.loads(path.read_text(encoding="utf-8"))
    pairs = stored["lengths"][:limit] if limit else stored["lengths"]
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(1, vocab_ids, (sum(length for length, _ in pairs),), generator=generator).tolist()
    examples, start = [], 0
    for length, prefix in pairs:
        tokens = ids[start:start + length]
        examples.append(Example(input_ids=tokens, labels=[IGNORE_INDEX] * prefix + tokens[prefix:]))
        start += length
    added = stored["tokenizer"]["added_tokens"] if added_tokens is None else added_tokens
    return {
        "examples": examples,
        "pad_id": 0,
        "tokenizer_size": stored["tokenizer"]["size"],
        "new_token_ids": list(range(vocab_ids - added, vocab_ids)),
        "summary": {
            "kind": f"lengths: {path.relative_to(ROOT)} (real example lengths and label layout, seeded random ids)",
            **{k: stored[k] for k in ("source", "split", "tunes", "examples", "split_tunes", "max_length", "loss_on",
                                      "condition_dropout", "tokenizer")},
            "examples_used": len(examples),
            "random_ids_below": vocab_ids,
        },
    }


def summarise_lengths(examples: Sequence[Any]) -> dict[str, Any]:
    lengths = sorted(len(e) for e in examples)
    return {"examples": len(lengths), "tokens": sum(lengths),
            "label_tokens": sum(sum(label != IGNORE_INDEX for label in e.labels) for e in examples),
            "example_tokens": {"median": lengths[len(lengths) // 2], "p90": lengths[int(0.9 * len(lengths))],
                               "p99": lengths[int(0.99 * len(lengths))], "max": lengths[-1],
                               "mean": round(sum(lengths) / len(lengths), 1)}}


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


def make_model(config: Any, device: torch.device, dtype: torch.dtype, attn: str = "sdpa") -> Any:
    """A random-init Llama of ``config`` on ``device`` (the same seed for every set-up)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)


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
    return load_module("abcgen_train_finetune", "train/finetune.py")


def best_attention(device: torch.device) -> str:
    """The fastest isolating attention implementation available here: torch's varlen flash kernel on CUDA
    (torch >= 2.10), else FlexAttention's block-sparse kernel; SDPA with position ids on CPU."""
    if device.type != "cuda":
        return "sdpa"
    from abcgen.training.attention import find_varlen_kernel

    return "torch_varlen" if find_varlen_kernel() is not None else "flex_attention"


def run_abcgen(setup: dict[str, Any], data: dict[str, Any], config: Any, device: torch.device, dtype: torch.dtype,
               steps: int, warmup: int, workdir: Path, compile_backend: str) -> dict[str, Any]:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    from abcgen.training.config import LoraSettings, TrainConfig
    from abcgen.training.data import pack_examples, packing_stats
    from abcgen.training.model import apply_lora
    from abcgen.training.speed import compile_model, resolve_pin_memory

    finetune = load_finetune()
    cuda = device.type == "cuda"
    accum = setup["accum"]
    cfg = TrainConfig()
    cfg.model.attn_implementation = best_attention(device) if setup["attn"] == "best" else setup["attn"]
    cfg.model.compile, cfg.model.compile_backend = setup["compile"], compile_backend
    cfg.model.gradient_checkpointing = bool(setup.get("gradient_checkpointing"))
    cfg.data.num_workers = setup.get("cuda_loader_workers", 0) if cuda else 0  # 2 cores on CPU: none
    cfg.optim.micro_batch_size = setup["batch"]
    cfg.optim.grad_accum_steps = accum
    cfg.optim.max_steps = warmup + steps
    cfg.optim.warmup_steps = min(cfg.optim.warmup_steps, warmup + steps - 1)
    cfg.optim.fused = setup["fused"]
    cfg.optim.loss_impl, cfg.optim.loss_chunk_size = setup["loss_impl"], setup["loss_chunk_size"]
    cfg.logging.tensorboard = False
    cfg.checkpoint.output_dir = str(workdir / f"abcgen_{setup['name']}")
    packed_path = finetune.check_speed_settings(cfg, device.type)  # registers torch_varlen
    # What `accelerate launch --config_file train/accelerate/{single-gpu,cpu}.yaml` gives finetune.py.
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if dtype == torch.bfloat16 else "no",
                              dataloader_config=DataLoaderConfiguration(
                                  non_blocking=resolve_pin_memory(cfg.data.pin_memory)))

    rows = pack_examples(data["examples"], setup["row_length"], seed=cfg.optim.seed, pad_id=data["pad_id"])
    model = make_model(config, device, dtype, cfg.model.attn_implementation)
    if cfg.model.gradient_checkpointing:  # as abcgen.training.model.load_model does
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    lora = LoraSettings(r=16, alpha=32, dropout=0.0, train_new_tokens=True)
    cfg.lora = lora
    model = apply_lora(model, lora, data["new_token_ids"])
    model = compile_model(model, cfg.model.compile, backend=cfg.model.compile_backend)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer, scheduler = finetune.make_optimizer(cfg, model)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()

    # The loop of finetune.main, minus logging, evaluation and checkpoints.
    batches_per_epoch = len(rows) // cfg.optim.micro_batch_size
    if batches_per_epoch < accum:
        raise SystemExit(f"{len(rows)} packed rows are too few for {setup['name']}")
    step, epoch, useful, positions, t0, started = 0, 0, 0, 0, 0.0, time.perf_counter()
    padding = torch.zeros((), dtype=torch.long, device=accelerator.device)
    records: list[dict[str, float]] = []
    warmup_seconds = 0.0
    graphs_at_t0 = 0
    while step < cfg.optim.max_steps:
        iterator = iter(finetune.train_loader(cfg, rows, epoch, accelerator))
        batch_in_epoch = 0
        while step < cfg.optim.max_steps and batch_in_epoch + accum <= batches_per_epoch:
            if step == warmup:
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                warmup_seconds = t0 - started
                graphs_at_t0 = compiled_graphs()
            micro_batches = [next(iterator) for _ in range(accum)]
            batch_in_epoch += accum
            record = finetune.optimizer_step(model, optimizer, scheduler, micro_batches, accelerator,
                                             cfg.optim.max_grad_norm, loss_impl=cfg.optim.loss_impl,
                                             chunk_size=cfg.optim.loss_chunk_size)
            step += 1
            records.append(record)
            if step > warmup:
                useful += record["tokens"]
                for batch in micro_batches:
                    positions += batch["input_ids"].numel()
                    padding += (batch["input_ids"] == data["pad_id"]).sum()  # no sync: read once at the end
        epoch += 1
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    result = {
        "attn_implementation": cfg.model.attn_implementation,
        "packed_attention": packed_path,
        "compile": f"{cfg.model.compile} ({cfg.model.compile_backend})" if cfg.model.compile != "none" else "none",
        "loss_impl": f"{cfg.optim.loss_impl} (chunks of {cfg.optim.loss_chunk_size} positions)",
        "optimizer": f"AdamW from finetune.make_optimizer (fused={cfg.optim.fused}), {cfg.optim.schedule} schedule, "
                     f"max_grad_norm {cfg.optim.max_grad_norm}",
        "data_loader": f"{cfg.data.num_workers} workers, pin_memory={resolve_pin_memory(cfg.data.pin_memory)}",
        "lora": (f"abcgen apply_lora: r={lora.r}, alpha={lora.alpha}, dropout {lora.dropout}, "
                 f"{', '.join(lora.target_modules)}; {len(data['new_token_ids'])} added token rows trained"),
        "grad_accum_steps": accum,
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
        "mixed_precision": accelerator.mixed_precision,
        "warmup_seconds": round(warmup_seconds, 1),
        # a graph compiled inside the timed steps (a shape dynamo had not seen) would be timed as training
        "graphs_compiled_while_timed": compiled_graphs() - graphs_at_t0,
        "seconds": seconds,
        "useful_tokens": useful,
        "positions": positions,
        "padding_positions": int(padding),
        "trainable_params": trainable,
        "packing": {k: round(v, 4) if isinstance(v, float) else v for k, v in packing_stats(rows).items()},
        "first_step": {"loss": records[0]["loss"], "grad_norm": records[0]["grad_norm"]},
        "loss_first_last": [round(records[0]["loss"], 4), round(records[-1]["loss"], 4)],
    }
    del model, optimizer, scheduler, accelerator
    return result


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def consistency(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How far the abcgen set-ups' first steps (same weights, same rows) are from each other: the loss and
    gradient norm must not depend on the attention path, loss implementation, compilation or micro-batching."""
    firsts = {r["setup"]: r["first_step"] for r in results if "first_step" in r}
    if len(firsts) < 2:
        return {"set_ups": sorted(firsts)}
    out: dict[str, Any] = {"set_ups": sorted(firsts)}
    for key in ("loss", "grad_norm"):
        values = [f[key] for f in firsts.values()]
        mid = sorted(values)[len(values) // 2]
        out[f"first_step_{key}"] = {name: round(f[key], 5) for name, f in firsts.items()}
        out[f"first_step_{key}_max_relative_spread"] = round((max(values) - min(values)) / abs(mid), 6) if mid else None
    return out


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


def run_setup(setup: dict[str, Any], data: dict[str, Any], config: Any, device: torch.device, dtype: torch.dtype,
              steps: int, warmup: int, workdir: Path, compile_backend: str, n_params: int,
              flops_peak: float | None) -> dict[str, Any]:
    """One set-up, measured; failures (out of memory, a kernel this machine lacks) are recorded, not raised."""
    reset_accelerate_state()
    entry: dict[str, Any] = {"setup": setup["name"], **{k: v for k, v in setup.items() if k != "name"}}
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        entry["memory_at_start_gb"] = round(torch.cuda.memory_allocated(device) / 1e9, 2)
    memory = CpuPeakMemory() if device.type == "cpu" else contextlib.nullcontext()
    started = time.perf_counter()
    try:
        with memory:
            if setup["kind"] == "abcgen":
                r = run_abcgen(setup, data, config, device, dtype, steps, warmup, workdir, compile_backend)
            elif setup["kind"] == "trainer_pad":
                r = run_trainer(setup, example_rows(data["examples"]), make_pad_collate(data["pad_id"]), config,
                                device, dtype, steps, warmup, workdir)
            else:
                r = run_trainer(setup, naive_pack_rows(data["examples"], setup["row_length"]), packed_collate,
                                config, device, dtype, steps, warmup, workdir)
    except Exception as exc:  # noqa: BLE001 -- one set-up failing must not lose the others' measurements
        entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        r = {}
    entry["wall_seconds"] = round(time.perf_counter() - started, 1)
    if r:
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
        peak = torch.cuda.max_memory_allocated(device) / 1e9
        entry["peak_memory_gb"] = round(peak, 2)
        entry["peak_memory_above_start_gb"] = round(peak - entry["memory_at_start_gb"], 2)
        entry["peak_memory_method"] = "torch.cuda.max_memory_allocated (reset before the set-up)"
    else:
        delta = memory.delta_bytes
        entry["peak_memory_gb"] = round(delta / 1e9, 3) if delta is not None else None
        entry["peak_memory_method"] = memory.method
    gc.collect()
    return entry


def ratios(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    by_name = {r["setup"]: r for r in results if "useful_tokens_per_s" in r}
    return {f"{a}/{b}": round(by_name[a]["useful_tokens_per_s"] / by_name[b]["useful_tokens_per_s"], 2)
            for a in by_name if a.startswith("abcgen") for b in by_name if b.startswith("trainer")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--data", choices=("corpus", "lengths"), default=None,
                        help="corpus: build and tokenize a corpus here; lengths: the stored example lengths "
                             "(default: corpus for tiny, lengths for llama-1b)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps timed (default: tiny 20, llama-1b 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3: compilation)")
    parser.add_argument("--quick", action="store_true", help=f"a shortened run: {QUICK_STEPS[0]} timed steps after "
                        f"{QUICK_STEPS[1]} warm-up step, the first {QUICK_EXAMPLES} examples (checks the script)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus folder (abcgen data build); "
                        "default: build music21:oneills1850 (music21:all for --write-lengths) in a temporary folder")
    parser.add_argument("--setups", default="", help="comma-separated subset of set-up names (default: all)")
    parser.add_argument("--compile-backend", choices=("inductor", "aot_eager", "eager"), default="inductor",
                        help="torch.compile backend of the compiled set-ups (aot_eager: no speed-up, compiles fast)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds: skip a set-up once the run could not finish it within this budget")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--write-lengths", action="store_true",
                        help=f"write {LENGTHS_FILE.relative_to(ROOT)} from the music21:all train split and exit")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.write_lengths:
        with tempfile.TemporaryDirectory(prefix="abcgen_lengths_") as tmp:
            payload = write_lengths(LENGTHS_FILE, args.corpus, Path(tmp))
        print(json.dumps({k: v for k, v in payload.items() if k != "lengths"}), flush=True)
        return 0

    steps, warmup = QUICK_STEPS if args.quick else DEFAULT_STEPS[args.shape]
    steps = args.steps if args.steps is not None else steps
    warmup = args.warmup if args.warmup is not None else warmup
    if steps < 1 or warmup < 1:
        parser.error("--steps and --warmup must be >= 1 (the first step is never timed)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    data_kind = args.data or ("lengths" if args.shape == "llama-1b" else "corpus")
    out = args.out or RESULTS / ("train_throughput_cpu.json" if device.type == "cpu"
                                 else f"train_throughput_gpu_{args.shape}.json")
    setups = plan(ROW_LENGTH[args.shape])
    wanted = [s for s in args.setups.split(",") if s]
    unknown = [s for s in wanted if s not in {p["name"] for p in setups}]
    if unknown:
        parser.error(f"unknown set-ups {unknown}; choose from {[p['name'] for p in setups]}")
    setups = [p for p in setups if not wanted or p["name"] in wanted]
    # Set-ups compile the same decoder layer with other attention paths, batch sizes and checkpointing:
    # more variants than dynamo's default limit of 8 per function.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    command = "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " + command
    with tempfile.TemporaryDirectory(prefix="abcgen_train_throughput_") as tmp:
        workdir = Path(tmp)
        limit = QUICK_EXAMPLES if args.quick else None
        if data_kind == "corpus":
            data = tokenized_corpus(args.corpus, "music21:oneills1850", workdir)
            data["examples"] = data["examples"][:limit] if limit else data["examples"]
            vocab_size = data["tokenizer_size"]
        else:
            stored_size = json.loads(LENGTHS_FILE.read_text(encoding="utf-8"))["tokenizer"]["size"]
            vocab_ids = SHAPES[args.shape]["vocab_size"] or stored_size
            data = length_data(LENGTHS_FILE, vocab_ids, None, limit)
            vocab_size = vocab_ids
        data["summary"].update(summarise_lengths(data["examples"]))
        print(json.dumps({"data": data["summary"]}), flush=True)
        config = model_config(args.shape, vocab_size)
        n_params = count_params(config)
        flops_peak, flops_source = peak_flops(device, dtype)
        payload: dict[str, Any] = {
            "benchmark": "train_throughput",
            "command": command.strip(),
            "environment": environment(device),
            "shape": args.shape,
            "model": {"config": {k: v for k, v in SHAPES[args.shape].items() if k != "vocab_size"}
                      | {"vocab_size": config.vocab_size}, "params": n_params,
                      "dtype": str(dtype).removeprefix("torch."), "weights": "random"},
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
                "timing": "wall time of the timed optimiser steps, after the warm-up steps (CUDA synchronised); "
                          "warmup_seconds includes compilation",
                "baseline": "re-implementation of ../shared/anchors/trainer_peft_baseline.py set-ups on this data",
                "ratio_target": f"issue 7: abcgen_fast >= 2x {BASELINE}; abcgen_memory >= 1.5x {BASELINE} with "
                                "peak_memory_above_start_gb < 16 on the llama-1b shape",
            },
            "setups": results,
        }

        def write() -> None:
            payload.update({"ratios_useful_tokens_per_s": ratios(results), "consistency": consistency(results),
                            "wall_seconds": round(time.perf_counter() - started, 1)})
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(out.name + ".partial")  # renamed: a run killed mid-write keeps the last file
            partial.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            partial.replace(out)

        longest = 0.0
        for setup in setups:
            elapsed = time.perf_counter() - started
            if device.type not in setup.get("devices", (device.type,)):
                results.append({"setup": setup["name"], "skipped": f"runs on {', '.join(setup['devices'])} only"})
            elif args.time_budget is not None and elapsed + longest > args.time_budget:
                results.append({"setup": setup["name"], "skipped": f"time budget: {elapsed:.0f} s used of "
                                f"{args.time_budget:.0f} s, the longest set-up so far took {longest:.0f} s"})
            else:
                entry = run_setup(setup, data, config, device, dtype, steps, warmup, workdir, args.compile_backend,
                                  n_params, flops_peak)
                longest = max(longest, entry["wall_seconds"])
                results.append(entry)
            print(json.dumps({k: results[-1].get(k) for k in ("setup", "useful_tokens_per_s", "padding_share",
                                                                "peak_memory_gb", "mfu_4N", "warmup_seconds",
                                                                "error", "skipped") if k in results[-1]}),
                  flush=True)
            write()
    write()
    print(json.dumps({"ratios": payload["ratios_useful_tokens_per_s"], "consistency": payload["consistency"],
                      "out": str(out), "wall_seconds": payload["wall_seconds"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
