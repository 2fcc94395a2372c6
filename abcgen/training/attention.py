"""Attention over packed rows that keeps tunes apart, by the fastest path each attention implementation has.

A packed row holds several tunes (``abcgen.training.data``); a tune must attend only to earlier tokens of
itself. transformers 5 (checked in 5.24: ``masking_utils.create_causal_mask``,
``modeling_flash_attention_utils._flash_attention_forward``) offers three ways, and which one isolates
the tunes depends on the attention implementation:

* ``position_ids`` -- no mask, position ids that restart per tune, ``use_cache=False``. ``create_causal_mask``
  detects the restarts (``find_packed_sequence_indices``) and builds a block-causal mask: for ``sdpa`` and
  ``eager`` a dense ``(B, 1, T, T)`` mask (it also keeps SDPA off its flash kernel), for ``flex_attention``
  a ``BlockMask`` whose kernel skips the blocks between tunes. **Not** for ``flash_attention_2/3``:
  there the mask helper ignores packing and ``_flash_attention_forward`` only reads packing from position
  ids when the batch has a single row, so with ``B > 1`` the tunes of a row would attend to each other.
* ``varlen`` -- the collator adds ``cu_seq_lens_q/k`` (int32 offsets of every tune in the flattened
  ``B * T`` tokens) and ``max_length_q/k`` (the longest tune); ``_flash_attention_forward`` passes them to
  the flash-attn varlen kernel, and ``torch_varlen`` (below) to torch's own. No ``T x T`` mask at all,
  and no work between tunes.
* ``mask`` -- an explicit additive ``(B, 1, T, T)`` float mask, honoured by ``sdpa`` and ``eager`` as is:
  the fallback, with the memory of a dense mask and no flash kernel.

``packed_attention_path`` picks the path for an implementation (``auto``: the fastest that isolates) and
refuses combinations that would let tunes attend to each other.

**``torch_varlen``** is an attention implementation registered here with transformers
(``register_torch_varlen``): on CUDA it runs ``torch.nn.attention.varlen.varlen_attn`` (the flash kernel
inside torch >= 2.10, so no flash-attn package), on the flattened ``(B * T, heads, head_dim)`` tokens.
Elsewhere (CPU, float32) it runs a reference: SDPA with the block-causal mask of the same segments,
which is what the tests compare against. Calls without a packed layout (generation with a padding mask,
or decoding one token against a cache) go to transformers' SDPA attention, so the same model generates
normally.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from abcgen.errors import ConfigError

logger = logging.getLogger(__name__)

PACKED_ATTENTION = ("auto", "position_ids", "varlen", "mask")
TORCH_VARLEN = "torch_varlen"
FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3")

# Per attention implementation: the packed-row paths that keep tunes apart, fastest first (``auto`` takes
# the first). An implementation missing here is not known to isolate packed rows.
ISOLATING_PATHS: dict[str, tuple[str, ...]] = {
    "sdpa": ("position_ids", "mask"),
    "eager": ("position_ids", "mask"),
    "flex_attention": ("position_ids",),
    **{name: ("varlen",) for name in FLASH_IMPLEMENTATIONS},
    TORCH_VARLEN: ("varlen",),
}


def packed_attention_path(attn_implementation: str, requested: str = "auto") -> str:
    """The packed-row path (``position_ids`` | ``varlen`` | ``mask``) for ``attn_implementation``.

    ``requested="auto"`` gives the fastest path that isolates tunes; an explicit path is checked.
    Raises ``ConfigError`` for an unknown path, or a path under which this implementation would let the
    tunes of a row attend to each other (e.g. ``position_ids`` with ``flash_attention_2``).
    """
    if requested not in PACKED_ATTENTION:
        raise ConfigError(f"data.packed_attention={requested!r} is not one of {', '.join(PACKED_ATTENTION)}")
    paths = ISOLATING_PATHS.get(attn_implementation)
    if paths is None:
        raise ConfigError(f"model.attn_implementation={attn_implementation!r} is not known to keep packed tunes "
                          f"apart; use one of {', '.join(ISOLATING_PATHS)}")
    if requested == "auto":
        return paths[0]
    if requested not in paths:
        raise ConfigError(f"data.packed_attention={requested!r} does not keep tunes apart with "
                          f"model.attn_implementation={attn_implementation!r}; use "
                          f"{' or '.join(paths)} (or auto)")
    return requested


def prepare_attention_implementation(attn_implementation: str, device_type: str) -> None:
    """Make ``attn_implementation`` ready to train on ``device_type`` (``"cuda"`` or ``"cpu"``): registers
    ``torch_varlen`` with transformers when it is the one asked for; raises ``ConfigError`` naming the fix
    when the implementation cannot train there. Call before the model is built."""
    if attn_implementation == "flex_attention" and device_type != "cuda":
        raise ConfigError("model.attn_implementation=flex_attention cannot train here: torch's FlexAttention has "
                          "no backward pass on CPU; use sdpa on CPU and flex_attention on a CUDA GPU")
    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError(f"model.attn_implementation={attn_implementation} needs the flash-attn package "
                          "(pip install flash-attn); torch_varlen runs the same kernel from torch itself")
    if attn_implementation == TORCH_VARLEN:
        if device_type == "cuda" and find_varlen_kernel() is None:
            raise ConfigError(f"model.attn_implementation=torch_varlen needs torch >= 2.10 on CUDA "
                              f"(torch.nn.attention.varlen); this is torch {torch.__version__}: use "
                              "flex_attention, or sdpa")
        if device_type != "cuda":
            logger.info("torch_varlen on %s runs its reference (SDPA with the block-causal mask of the same "
                        "segments), not the flash kernel", device_type)
        register_torch_varlen()


# --- the varlen layout -----------------------------------------------------------------------------------


def varlen_kwargs(seq_lens_per_row: Sequence[Sequence[int]]) -> dict[str, Any]:
    """``cu_seq_lens_q/k`` and ``max_length_q/k`` of packed rows, as transformers' flash path reads them.

    ``seq_lens_per_row[b]`` are the segment lengths of row ``b`` (tunes, then the pad segment), summing
    to the row length. The offsets run over the flattened ``B * T`` tokens: ``(num_segments + 1,)`` int32,
    starting at 0. ``max_length_*`` is a Python int (the kernels size their grid by it).
    """
    lengths = [length for row in seq_lens_per_row for length in row]
    if not lengths or min(lengths) < 1:
        raise ValueError(f"segment lengths must be positive, got {lengths[:8]}")
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
    longest = max(lengths)
    return {"cu_seq_lens_q": offsets, "cu_seq_lens_k": offsets, "max_length_q": longest, "max_length_k": longest}


def _offsets_from_position_ids(position_ids: torch.Tensor | None, batch: int, length: int,
                               device: torch.device) -> tuple[torch.Tensor, int]:
    """Segment offsets of ``(B, T)`` position ids (a segment starts where the id does not follow the
    previous one, and at every row start); without position ids, one segment per row."""
    if position_ids is None:
        offsets = torch.arange(0, (batch + 1) * length, length, dtype=torch.int32, device=device)
        return offsets, length
    ids = position_ids.expand(batch, -1)
    starts = torch.ones_like(ids, dtype=torch.bool)
    starts[:, 1:] = ids[:, 1:] != ids[:, :-1] + 1
    flat_starts = starts.reshape(-1).nonzero().flatten().to(torch.int32)
    offsets = torch.cat([flat_starts, torch.tensor([batch * length], dtype=torch.int32, device=device)])
    return offsets, int(offsets.diff().max())


# --- the attention function ----------------------------------------------------------------------------


# (varlen_attn, fixed keyword arguments, takes enable_gqa, takes scale), or None without the kernel;
# read by register_torch_varlen, outside any compiled region (inspect cannot be traced).
VarlenKernel = tuple[Callable[..., torch.Tensor], dict[str, Any], bool, bool]
_VARLEN_KERNEL: VarlenKernel | None = None


def find_varlen_kernel() -> VarlenKernel | None:
    """torch's ``varlen_attn`` and how this torch version is called, or None when it has none.

    torch 2.10 takes ``is_causal=True``; later versions ``window_size=(-1, 0)`` and ``enable_gqa``."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    fixed: dict[str, Any] = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    return varlen_attn, fixed, "enable_gqa" in params, "scale" in params


def _kernel_for(query: torch.Tensor) -> VarlenKernel | None:
    """The varlen kernel when it runs on these inputs (CUDA, half precision), else None: the reference."""
    if _VARLEN_KERNEL is None or not query.is_cuda or query.dtype not in (torch.float16, torch.bfloat16):
        return None
    return _VARLEN_KERNEL


def _reference_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, offsets: torch.Tensor,
                      scaling: float) -> torch.Tensor:
    """Causal attention within the segments of ``offsets`` (over flattened ``B * T`` tokens), by SDPA with
    a block-causal mask; ``query`` ``(B, Hq, T, D)``, ``key/value`` ``(B, Hkv, T, D)`` -> ``(B, T, Hq, D)``.
    Segments never cross rows (every row start is an offset)."""
    batch, heads, length, _ = query.shape
    tokens = batch * length
    segment = torch.zeros(tokens, dtype=torch.int64, device=query.device)
    segment[offsets[1:-1].long()] = 1
    segment = segment.cumsum(0).view(batch, length)
    causal = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
    allowed = (segment[:, :, None] == segment[:, None, :]) & causal  # (B, T, T)
    if key.shape[1] != heads:
        repeat = heads // key.shape[1]
        key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed[:, None], scale=scaling)
    return out.transpose(1, 2)


def torch_varlen_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                                   value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float = 0.0,
                                   scaling: float | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers attention interface: ``query`` ``(B, Hq, T, D)``, ``key``/``value`` ``(B, Hkv, S, D)``
    -> ``((B, T, Hq, D), None)``.

    Packed layout (no mask and ``S == T``): causal attention within each segment given by
    ``cu_seq_lens_q`` (from ``collate_packed(..., attention="varlen")``), else by restarting
    ``position_ids``, else one segment per row. Anything else (a padding mask, a KV cache) goes to
    transformers' SDPA attention.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, length, head_dim = query.shape
    if attention_mask is not None or key.shape[2] != length:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    for unsupported in ("sliding_window", "softcap"):
        if kwargs.get(unsupported):
            raise ConfigError(f"torch_varlen does not implement {unsupported} (this model uses "
                              f"{unsupported}={kwargs[unsupported]}): use flex_attention or sdpa")
    if dropout:
        raise ConfigError(f"torch_varlen has no attention dropout (the model asks for {dropout}): set the model "
                          "config's attention_dropout to 0, or use sdpa")
    scale = head_dim**-0.5 if scaling is None else scaling
    offsets = kwargs.get("cu_seq_lens_q")
    if offsets is None:
        offsets, longest = _offsets_from_position_ids(kwargs.get("position_ids"), batch, length, query.device)
    else:
        longest = kwargs["max_length_q"]
    kernel = _kernel_for(query)
    if kernel is None:
        return _reference_varlen(query, key, value, offsets, scale), None
    varlen_attn, fixed, gqa, takes_scale = kernel
    q = query.transpose(1, 2).reshape(batch * length, heads, head_dim)
    k = key.transpose(1, 2).reshape(batch * length, key.shape[1], head_dim)
    v = value.transpose(1, 2).reshape(batch * length, value.shape[1], head_dim)
    extra = dict(fixed)
    if k.shape[1] != heads:
        if gqa:
            extra["enable_gqa"] = True
        else:
            k, v = k.repeat_interleave(heads // k.shape[1], dim=1), v.repeat_interleave(heads // v.shape[1], dim=1)
    if takes_scale:
        extra["scale"] = scale
    elif abs(scale - head_dim**-0.5) > 1e-12:
        raise ConfigError(f"torch {torch.__version__}'s varlen_attn has no scale argument and this model scales "
                          f"attention by {scale}, not 1/sqrt(head_dim): use sdpa or flex_attention")
    out = varlen_attn(q, k, v, offsets, offsets, longest, longest, **extra)
    return out.view(batch, length, heads, head_dim), None


def _torch_varlen_mask(batch_size: int, q_length: int, kv_length: int, q_offset: Any = 0, kv_offset: Any = 0,
                       attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """The mask transformers builds for ``torch_varlen``: none for a packed (or plain causal) training
    forward -- the attention reads the segments itself, so the dense packed mask is never built --
    and SDPA's mask otherwise (padding, a KV cache), where the attention falls back to SDPA."""
    from transformers.masking_utils import sdpa_mask

    plain = isinstance(q_offset, int) and isinstance(kv_offset, int) and q_offset == kv_offset == 0
    if attention_mask is None and q_length == kv_length and plain:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, attention_mask=attention_mask, **kwargs)


def register_torch_varlen() -> None:
    """Make ``attn_implementation="torch_varlen"`` known to transformers (idempotent): the attention
    function and its mask function. Call before building the model."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    global _VARLEN_KERNEL
    AttentionInterface.register(TORCH_VARLEN, torch_varlen_attention_forward)
    AttentionMaskInterface.register(TORCH_VARLEN, _torch_varlen_mask)
    _VARLEN_KERNEL = find_varlen_kernel()
