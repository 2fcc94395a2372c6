"""Causal-LM loss as a *sum* over label tokens, computed in chunks, and how to weight micro-batches.

**Why a sum.** Every real token must weigh the same, whatever micro-batch or process it lands in. Packed
rows carry different numbers of label tokens (prefix masking, padding), so averaging per micro-batch and
then over micro-batches weighs tokens of sparse batches more. Instead, for one optimizer step:

1. take the step's micro-batches (``gradient_accumulation_steps`` of them) from the loader first;
2. ``num_tokens = global_token_count(batches, accelerator)``: label tokens of all of them on all
   processes (one all-reduce per optimizer step, before any backward pass);
3. for each micro-batch, inside ``with accelerator.accumulate(model):``
   ``sum_loss, _ = token_sum_cross_entropy(logits, labels)`` and
   ``accelerator.backward(sum_loss * loss_scale(num_tokens, accelerator))``.

``loss_scale = num_processes * gradient_accumulation_steps / num_tokens``: DDP and FSDP *average*
gradients over processes (hence ``num_processes``), and ``accelerator.backward`` divides the loss by
``gradient_accumulation_steps`` (DeepSpeed does the same in its engine), which the second factor undoes.
The accumulated gradient is then exactly ``d(sum of all token losses) / d(theta) / num_tokens`` -- the
gradient of one big batch with the mean over its tokens (``tests/test_loss.py`` checks it). The loss to
*log* for the step is ``sum over micro-batches of sum_loss`` all-reduced and divided by ``num_tokens``.

**Memory.** ``token_sum_cross_entropy`` upcasts the logits to float32 one chunk of positions at a time
and checkpoints each chunk, so neither the float32 copy nor the log-softmax of the whole ``(B, T, V)``
logits is ever held (only the logits themselves, which the model returns anyway).
``causal_lm_loss_from_hidden`` goes further: it never builds the full logits at all -- it keeps only the
labelled positions of the final hidden states, and computes ``hidden @ W.T`` chunk by chunk, recomputed
in the backward pass (for 128k-token vocabularies, where the logits dominate the activation memory).
It ignores output soft-capping and logit scaling (Gemma-2, Cohere): use the plain variant for those.

**From a model** (``model_token_loss``, what the training loop calls; ``optim.loss_impl``): ``logits``
calls the model and applies ``token_sum_cross_entropy`` to its ``(B, T, V)`` logits; ``hidden`` calls the
model with ``logits_to_keep=1`` (one position of logits per row instead of ``T``), takes the final hidden
states from a forward hook on ``get_decoder()``, and projects only the labelled positions through
``get_output_embeddings()`` -- the head *module*, so peft's trainable-token or LoRA wrappers on the head
are honoured. The model is still called as a whole, so DDP/FSDP wrappers see the forward pass they sync
gradients for, and a compiled model is traced with the hook in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from abcgen.errors import ConfigError
from abcgen.models.vae import free_bits_kl, gaussian_kl
from abcgen.training.vae_data import word_dropout

IGNORE_INDEX = -100
LOSS_IMPLEMENTATIONS = ("logits", "hidden")
DEFAULT_CHUNK_SIZE = 1024  # positions per chunk (per row for the logits variant); higher = more memory


def _shifted(labels: torch.Tensor) -> torch.Tensor:
    """Targets of positions ``0..T-2``: the label of the next token. ``(B, T) -> (B, T-1)``."""
    return labels[:, 1:]


def num_label_tokens(labels: torch.Tensor) -> int:
    """Label tokens of a ``(B, T)`` label tensor once shifted (the first position is never a target)."""
    return int((_shifted(labels) != IGNORE_INDEX).sum())


def _chunk_ce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # (..., V) any dtype -> a float32 scalar (float64 for float64 logits: never narrower than the input);
    # the upcast copy lives only inside this chunk
    flat = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(flat if flat.dtype == torch.float64 else flat.float(), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def _maybe_checkpoint(fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
    needs_grad = torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
    return checkpoint(fn, *args, use_reentrant=False) if needs_grad else fn(*args)


def token_sum_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *,
                            chunk_size: int = DEFAULT_CHUNK_SIZE,
                            recompute: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of token losses, number of label tokens)`` of a causal LM.

    ``logits`` ``(B, T, V)`` in any dtype, ``labels`` ``(B, T)`` unshifted (the model's input positions,
    -100 = no loss); position ``t`` predicts ``labels[:, t + 1]``. The sum is float32 (float64 for float64
    logits); the count a long
    scalar. Chunks of ``chunk_size`` positions are upcast one at a time; ``recompute`` (default: when the
    logits are narrower than float32) checkpoints each chunk so that its float32 copy and log-softmax are not kept
    for the backward pass. With float32 logits there is no upcast to save and recomputing only costs time.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    if recompute is None:
        recompute = logits.dtype not in (torch.float32, torch.float64)
    # Shift the targets, not the logits: slicing (B, T, V) logits would copy them on the reshape.
    targets = F.pad(_shifted(labels), (0, 1), value=IGNORE_INDEX)  # (B, T): position t -> label t+1
    total = logits.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.shape[1], chunk_size):
        chunk_targets = targets[:, start:start + chunk_size]
        if not bool((chunk_targets != IGNORE_INDEX).any()):
            continue
        chunk = logits if chunk_size >= logits.shape[1] else logits[:, start:start + chunk_size]
        total = total + (_maybe_checkpoint(_chunk_ce_sum, chunk, chunk_targets) if recompute
                         else _chunk_ce_sum(chunk, chunk_targets))
    return total, (targets != IGNORE_INDEX).sum()


def causal_lm_loss_from_hidden(
    hidden_states: torch.Tensor,
    lm_head: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    labels: torch.Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_sum_cross_entropy(lm_head(hidden_states), labels)`` without materialising the logits.

    ``hidden_states`` ``(B, T, H)`` are the final (normed) hidden states -- e.g.
    ``model.get_decoder()(...).last_hidden_state``; ``lm_head`` is the output weight ``(V, H)`` or a
    module/callable mapping ``(N, H) -> (N, V)`` (pass the module when a wrapper such as peft's
    trainable-token layer changes its output: a bare weight would skip the wrapper). Only labelled
    positions are projected, ``chunk_size`` of them at a time, recomputed in the backward pass.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    targets = _shifted(labels)  # (B, T-1)
    keep = targets != IGNORE_INDEX
    hidden = hidden_states[:, :-1][keep]  # (N, H), labelled positions only
    targets = targets[keep]  # (N,)
    if isinstance(lm_head, torch.Tensor):
        extra: tuple[torch.Tensor, ...] = (lm_head,)

        def chunk_loss(h: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return _chunk_ce_sum(F.linear(h, w), t)  # (n, H) @ (H, V) -> (n, V)
    else:
        extra = ()
        head = lm_head

        def chunk_loss(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # type: ignore[misc]
            return _chunk_ce_sum(head(h), t)
    total = hidden_states.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_size):
        total = total + _maybe_checkpoint(chunk_loss, hidden[start:start + chunk_size],
                                          targets[start:start + chunk_size], *extra)
    return total, keep.sum()


# --- from a model --------------------------------------------------------------------------------------


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The ``PreTrainedModel`` inside DDP/FSDP (``.module``), ``torch.compile`` (``._orig_mod``) and peft
    (``get_base_model()``) wrappers: the module that has ``get_decoder`` and ``get_output_embeddings``."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel) or type(model).__name__ in (
                "FullyShardedDataParallel", "DeepSpeedEngine"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        else:
            return model


class _HiddenStateCapture:
    """A forward hook on the decoder that keeps its last ``last_hidden_state`` ``(B, T, H)`` until taken."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.hidden: torch.Tensor | None = None
        decoder.register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def take(self) -> torch.Tensor:
        hidden, self.hidden = self.hidden, None
        if hidden is None:
            raise RuntimeError("the decoder's forward hook did not run: the model did not call get_decoder()")
        return hidden


def _hidden_capture(model: torch.nn.Module) -> tuple[_HiddenStateCapture, torch.nn.Module]:
    """The capture installed (once) on the model's decoder, and the output head module."""
    base = unwrap_model(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if not isinstance(decoder, torch.nn.Module) or not isinstance(head, torch.nn.Module):
        raise ConfigError(f"optim.loss_impl=hidden needs a model with get_decoder() and get_output_embeddings() "
                          f"modules; {type(base).__name__} has not: use optim.loss_impl=logits")
    capture = getattr(base, "_abcgen_hidden_capture", None)
    if capture is None:
        capture = _HiddenStateCapture(decoder)
        base._abcgen_hidden_capture = capture  # one hook per model, whatever the number of calls
    return capture, head


def model_token_loss(model: torch.nn.Module, inputs: Mapping[str, Any], labels: torch.Tensor, *,
                     impl: str = "logits", chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of token losses, number of label tokens)`` of ``model(**inputs)`` against ``labels`` ``(B, T)``.

    ``impl="logits"``: from the model's full logits (``token_sum_cross_entropy``). ``impl="hidden"``: the
    logits are never built whole (``causal_lm_loss_from_hidden`` on the final hidden states, see the
    module docstring) -- the same value within float rounding, much less memory with a large vocabulary.
    ``inputs`` are the model's keyword arguments (``forward_kwargs(batch)``).
    """
    if impl == "logits":
        return token_sum_cross_entropy(model(**inputs).logits, labels, chunk_size=chunk_size)
    if impl != "hidden":
        raise ConfigError(f"optim.loss_impl={impl!r} is not one of {', '.join(LOSS_IMPLEMENTATIONS)}")
    capture, head = _hidden_capture(model)
    model(**inputs, logits_to_keep=1)
    return causal_lm_loss_from_hidden(capture.take(), head, labels, chunk_size=chunk_size)


# --- weighting micro-batches ---------------------------------------------------------------------------


def global_token_count(batches: Iterable[Mapping[str, torch.Tensor]], accelerator: Any = None) -> int:
    """Label tokens (after the causal shift) in the micro-batches of one optimizer step, summed over all
    processes: one all-reduce through ``accelerator.reduce`` (``accelerator=None``: this process only).

    Raises ``ValueError`` when the step has no label token at all (its loss would be 0/0; a run whose
    labels are all masked must not look like a run with loss 0.0).
    """
    local = sum(num_label_tokens(batch["labels"]) for batch in batches)
    if accelerator is None:
        total = local
    else:
        total = int(accelerator.reduce(torch.tensor(local, device=accelerator.device), reduction="sum").item())
    if total == 0:
        raise ValueError("the micro-batches of this optimizer step have no label tokens on any process: "
                         "check loss_on and the label mask")
    return total


def loss_scale(num_tokens: int, accelerator: Any = None) -> float:
    """The factor of a micro-batch's summed loss before ``accelerator.backward``:
    ``num_processes * gradient_accumulation_steps / num_tokens`` (1 / ``num_tokens`` without accelerator,
    for a plain ``loss.backward()``). See the module docstring for why both factors are there."""
    if num_tokens <= 0:
        raise ValueError(f"num_tokens={num_tokens} must be positive")
    if accelerator is None:
        return 1.0 / num_tokens
    return accelerator.num_processes * accelerator.gradient_accumulation_steps / num_tokens


# The name the plan used for the weighting rule.
accumulation_normaliser = loss_scale


# --- the VAE's objective -------------------------------------------------------------------------------------


def vae_loss(model: Any, batch: dict[str, torch.Tensor], kl_weight: float, free_bits: float,
             word_dropout_rate: float = 0.0, blank_id: int = 0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """``(loss per segment, sums)`` of one ``MusicVAE`` batch: the annealed, free-bits negative ELBO
    ``recon + kl_weight * sum_d max(free_bits, mean_batch KL_d)`` (``train/vae_loop.py`` explains it) and
    the sums the loop logs: ``recon`` (nats), ``tokens``, ``kl`` (true KL, nats), ``segments``."""
    inputs = word_dropout(batch["input_ids"], batch["body_mask"], word_dropout_rate, blank_id, generator)
    out = model(input_ids=inputs, attention_mask=batch["attention_mask"], encoder_input_ids=batch["encoder_input_ids"],
                encoder_attention_mask=batch["encoder_attention_mask"], use_cache=False)
    recon_sum, tokens = token_sum_cross_entropy(out.logits, batch["labels"])
    kl = gaussian_kl(out.mu.float(), out.logvar.float())  # (B, D)
    segments = batch["input_ids"].shape[0]
    loss = recon_sum / segments + kl_weight * free_bits_kl(kl, free_bits)
    return loss, {"recon": float(recon_sum.detach()), "tokens": int(tokens), "kl": float(kl.detach().sum()),
                  "segments": segments}
