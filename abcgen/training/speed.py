"""Speed switches of the training loop that do not change what is computed: ``torch.compile`` and pinned
host memory for batches. (The attention path is ``abcgen.training.attention``; the loss that never builds
the logits is ``abcgen.training.loss.model_token_loss``; fused AdamW is ``optim.fused``.)

**Compilation** (``model.compile``). ``model`` compiles the whole forward pass in place
(``nn.Module.compile``: the module keeps its class, parameter names and ``save_pretrained``);
``regional`` compiles each decoder layer instead -- PyTorch's "regional compilation" recipe: the layers
are identical, so one compiled graph serves all of them, compiling takes a fraction of the whole-model
time, and the rest (embeddings, mask construction, the loss) stays eager and free to change shape.
The backend is ``model.compile_backend``: ``inductor`` generates fused kernels (Triton on CUDA, C++ on
CPU -- it needs a C++ compiler there); ``aot_eager`` traces and partitions the graph but runs the usual
kernels (no speed-up: it checks that a model compiles, quickly); ``eager`` only traces.

**Pinned memory** (``data.pin_memory``): the DataLoader puts batches in page-locked host memory, so the
copy to the GPU can run asynchronously (the accelerator is told ``non_blocking=True``). Only useful with
CUDA; ``auto`` turns it on exactly then.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
from typing import Any

import torch

from abcgen.errors import ConfigError
from abcgen.training.loss import unwrap_model

logger = logging.getLogger(__name__)

COMPILE_MODES = ("none", "model", "regional")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
PIN_MEMORY = ("auto", "always", "never")


def resolve_pin_memory(setting: str) -> bool:
    """Whether the DataLoader pins batches: ``auto`` = with CUDA, ``always`` (only when CUDA is there:
    pinning needs a GPU driver), ``never``."""
    if setting not in PIN_MEMORY:
        raise ConfigError(f"data.pin_memory={setting!r} is not one of {', '.join(PIN_MEMORY)}")
    if setting == "never":
        return False
    if not torch.cuda.is_available():
        if setting == "always":
            logger.warning("data.pin_memory=always but no CUDA device: batches are not pinned")
        return False
    return True


def check_compile_supported(mode: str, backend: str, device_type: str) -> None:
    """Raise ``ConfigError`` naming the fix when ``model.compile=mode`` with ``backend`` cannot run on
    ``device_type`` (``"cuda"`` or ``"cpu"``): before a model is built, not after minutes of tracing."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"model.compile={mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if backend not in COMPILE_BACKENDS:
        raise ConfigError(f"model.compile_backend={backend!r} is not one of {', '.join(COMPILE_BACKENDS)}")
    if mode == "none":
        return
    if not torch._dynamo.is_dynamo_supported():
        raise ConfigError(f"model.compile={mode} but torch.compile is not supported with this Python/torch "
                          f"({torch.__version__}): set model.compile none")
    if backend != "inductor":
        return
    if device_type == "cuda" and importlib.util.find_spec("triton") is None:
        raise ConfigError("model.compile with the inductor backend needs triton on CUDA (pip install triton), "
                          "or set model.compile none")
    if device_type == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        raise ConfigError("model.compile with the inductor backend needs a C++ compiler on CPU (apt install g++), "
                          "or set model.compile none")


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a transformer (``get_decoder().layers``), through DDP/compile/peft wrappers."""
    base = unwrap_model(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        raise ConfigError(f"model.compile=regional compiles the decoder layers, and {type(base).__name__} has no "
                          "get_decoder().layers: use model.compile model")
    return list(layers)


def compile_model(model: Any, mode: str, *, backend: str = "inductor") -> Any:
    """Compile ``model`` in place (``none`` | ``model`` | ``regional``) and return it.

    Compilation itself happens lazily, at the first forward pass (and again if shapes change: dynamo
    then marks the changing sizes dynamic). Call after LoRA is applied and before
    ``accelerator.prepare``; the parameters and the module tree are unchanged."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"model.compile={mode!r} is not one of {', '.join(COMPILE_MODES)}")
    if mode == "none":
        return model
    if mode == "model":
        model.compile(backend=backend)
        logger.info("compiled the whole model (%s backend)", backend)
        return model
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(backend=backend)
    logger.info("compiled %d decoder layers (%s backend, regional)", len(layers), backend)
    return model


def eager_mode() -> contextlib.AbstractContextManager[Any]:
    """A context in which compiled modules run their eager code (``torch.compiler.set_stance("force_eager")``,
    torch >= 2.6; a no-op before): for evaluation and sampling, whose shapes would each be a compilation."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()
