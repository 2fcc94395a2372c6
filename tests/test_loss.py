"""Chunked causal-LM loss and the weighting of micro-batches (gradient-accumulation equivalence)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from abcgen.training.loss import (
    IGNORE_INDEX,
    causal_lm_loss_from_hidden,
    global_token_count,
    loss_scale,
    model_token_loss,
    num_label_tokens,
    token_sum_cross_entropy,
)


def _random_batch(seed: int, batch: int = 3, length: int = 37, vocab: int = 29, hidden: int = 8):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    labels[torch.rand(batch, length, generator=g) < 0.3] = IGNORE_INDEX
    logits = torch.randn(batch, length, vocab, generator=g)
    hidden_states = torch.randn(batch, length, hidden, generator=g)
    weight = torch.randn(vocab, hidden, generator=g)
    return logits, labels, hidden_states, weight


def _reference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


@pytest.mark.parametrize("chunk_size", [1, 5, 36, 1000])
def test_chunked_cross_entropy_equals_torch(chunk_size: int) -> None:
    logits, labels, _, _ = _random_batch(0)
    mine_in = logits.clone().requires_grad_()
    ref_in = logits.clone().requires_grad_()
    total, count = token_sum_cross_entropy(mine_in, labels, chunk_size=chunk_size)
    expected = _reference(ref_in, labels)
    torch.testing.assert_close(total, expected, atol=1e-4, rtol=1e-6)
    assert int(count) == int((labels[:, 1:] != IGNORE_INDEX).sum()) == num_label_tokens(labels)
    total.backward()
    expected.backward()
    torch.testing.assert_close(mine_in.grad, ref_in.grad, atol=1e-6, rtol=1e-5)
    # bf16 logits are upcast per chunk: same as upcasting all of them first
    low, _ = token_sum_cross_entropy(logits.bfloat16(), labels, chunk_size=chunk_size)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, _reference(logits.bfloat16(), labels), atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [3, 64])
def test_loss_from_hidden_equals_loss_from_logits(chunk_size: int) -> None:
    _, labels, hidden_states, weight = _random_batch(1)
    grads = []
    for head in ("weight", "module", "logits"):
        h = hidden_states.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        if head == "logits":
            total, count = token_sum_cross_entropy(h @ w.T, labels)
        else:
            lm_head = w if head == "weight" else (lambda x, w=w: F.linear(x, w))
            total, count = causal_lm_loss_from_hidden(h, lm_head, labels, chunk_size=chunk_size)
        total.backward()
        grads.append((total.detach(), int(count), h.grad, w.grad))
    for total, count, h_grad, w_grad in grads[:2]:
        torch.testing.assert_close(total, grads[2][0], atol=1e-4, rtol=1e-6)
        assert count == grads[2][1]
        torch.testing.assert_close(h_grad, grads[2][2], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(w_grad, grads[2][3], atol=1e-6, rtol=1e-5)


def _tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=61, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).double()  # float64: the comparison is about arithmetic, not rounding


def _micro_batches() -> list[dict[str, torch.Tensor]]:
    """4 micro-batches of 2 rows x 20 tokens with 30, 7, 19 and 2 label tokens."""
    g = torch.Generator().manual_seed(5)
    batches = []
    for num_labels in (30, 7, 19, 2):
        input_ids = torch.randint(0, 61, (2, 20), generator=g)
        labels = torch.full((2, 20), IGNORE_INDEX)
        keep = torch.randperm(2 * 19, generator=g)[:num_labels]  # label positions 1..19 of each row
        flat = labels[:, 1:].reshape(-1).clone()
        flat[keep] = input_ids[:, 1:].reshape(-1)[keep]
        labels[:, 1:] = flat.view(2, 19)
        batches.append({"input_ids": input_ids, "labels": labels})
    return batches


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def _big_batch_grads(batches: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """The reference: the gradients of one batch made of all micro-batches, mean over its tokens."""
    model = _tiny_model()
    big = {key: torch.cat([b[key] for b in batches]) for key in ("input_ids", "labels")}
    total, count = token_sum_cross_entropy(model(input_ids=big["input_ids"]).logits, big["labels"])
    (total / count).backward()
    return _grads(model)


def test_accumulated_micro_batches_give_the_big_batch_gradient() -> None:
    batches = _micro_batches()
    assert [num_label_tokens(b["labels"]) for b in batches] == [30, 7, 19, 2]

    expected = _big_batch_grads(batches)

    model = _tiny_model()
    num_tokens = global_token_count(batches)
    assert num_tokens == 58
    for batch in batches:
        micro_sum, _ = token_sum_cross_entropy(model(input_ids=batch["input_ids"]).logits, batch["labels"])
        (micro_sum * loss_scale(num_tokens)).backward()
    for got, want in zip(_grads(model), expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)

    # The naive way (mean per micro-batch, averaged over micro-batches) is measurably different.
    naive = _tiny_model()
    for batch in batches:
        micro_sum, micro_count = token_sum_cross_entropy(naive(input_ids=batch["input_ids"]).logits, batch["labels"])
        (micro_sum / micro_count / len(batches)).backward()
    assert max((a - b).abs().max() for a, b in zip(_grads(naive), expected, strict=True)) > 1e-3


def test_loss_scale_undoes_accelerate_division() -> None:
    """With ``accelerator.accumulate`` + ``accelerator.backward`` (which divides by the accumulation steps)
    the update equals one big batch's; ``loss_scale`` carries num_processes * accumulation steps."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    batches = _micro_batches()
    expected = _big_batch_grads(batches)

    try:
        accelerator = Accelerator(cpu=True, gradient_accumulation_steps=len(batches))
        model = accelerator.prepare(_tiny_model())
        num_tokens = global_token_count(batches, accelerator)
        assert num_tokens == 58 and loss_scale(num_tokens, accelerator) == pytest.approx(4 / 58)
        for batch in batches:
            with accelerator.accumulate(model):
                micro_sum, _ = token_sum_cross_entropy(model(input_ids=batch["input_ids"]).logits, batch["labels"])
                accelerator.backward(micro_sum * loss_scale(num_tokens, accelerator))
        for got, want in zip(_grads(model), expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


class _SimulatedRank:
    """What ``loss_scale``/``global_token_count`` read from an accelerator, for one of 2 simulated DDP ranks."""

    num_processes = 2
    gradient_accumulation_steps = 2
    device = torch.device("cpu")

    def __init__(self, all_counts: list[int]) -> None:
        self.all_counts = all_counts  # every rank's local label-token count (what the all-reduce sums)

    def reduce(self, tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        assert reduction == "sum"
        return torch.tensor(sum(self.all_counts))


def test_two_processes_with_accumulation_give_the_big_batch_gradient() -> None:
    """2 ranks x 2 micro-batches of unequal sizes; backward divides by the accumulation steps (as
    ``accelerator.backward`` does) and the ranks' gradients are averaged (as DDP does)."""
    batches = _micro_batches()
    expected = _big_batch_grads(batches)

    shards = [batches[:2], batches[2:]]
    local_counts = [sum(num_label_tokens(b["labels"]) for b in shard) for shard in shards]
    rank_grads = []
    for shard in shards:
        rank = _SimulatedRank(local_counts)
        num_tokens = global_token_count(shard, rank)
        assert num_tokens == 58
        model = _tiny_model()
        for batch in shard:
            micro_sum, _ = token_sum_cross_entropy(model(input_ids=batch["input_ids"]).logits, batch["labels"])
            (micro_sum * loss_scale(num_tokens, rank) / rank.gradient_accumulation_steps).backward()
        rank_grads.append(_grads(model))
    for g0, g1, want in zip(*rank_grads, expected, strict=True):
        torch.testing.assert_close((g0 + g1) / 2, want, atol=1e-6, rtol=1e-6)


def test_a_step_without_label_tokens_is_an_error() -> None:
    labels = torch.full((2, 5), IGNORE_INDEX)
    with pytest.raises(ValueError, match="no label tokens"):
        global_token_count([{"labels": labels}])
    with pytest.raises(ValueError):
        loss_scale(0)


def test_recomputed_chunks_give_the_same_loss_and_gradient() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 17, 11)
    labels = torch.randint(0, 11, (3, 17))
    labels[0, :5] = -100
    grads = []
    for recompute in (False, True):
        x = logits.clone().requires_grad_(True)
        total, count = token_sum_cross_entropy(x, labels, chunk_size=4, recompute=recompute)
        total.backward()
        grads.append((float(total.detach()), int(count), x.grad))
    assert grads[0][:2] == pytest.approx(grads[1][:2])
    assert torch.allclose(grads[0][2], grads[1][2], atol=1e-6)


def test_float64_logits_are_not_narrowed_to_float32() -> None:
    logits, labels, _, _ = _random_batch(2)
    total, _ = token_sum_cross_entropy(logits.double(), labels, chunk_size=7)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).double(), labels[:, 1:].reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")
    assert total.dtype == torch.float64
    torch.testing.assert_close(total, expected, atol=1e-10, rtol=1e-12)


def test_model_token_loss_from_hidden_states_equals_the_loss_from_logits() -> None:
    """``impl="hidden"`` through a real model: the decoder's hidden states and the head module, the same
    loss and gradients as ``impl="logits"`` (float64), and accumulated micro-batches still give the big
    batch's gradient."""
    batches = _micro_batches()
    expected = _big_batch_grads(batches)
    results = {}
    for impl in ("logits", "hidden"):
        model = _tiny_model()
        num_tokens = global_token_count(batches)
        totals = []
        for batch in batches:
            micro_sum, _ = model_token_loss(model, {"input_ids": batch["input_ids"]}, batch["labels"], impl=impl,
                                            chunk_size=5)
            (micro_sum * loss_scale(num_tokens)).backward()
            totals.append(micro_sum.detach())
        results[impl] = (torch.stack(totals), _grads(model))
    torch.testing.assert_close(results["hidden"][0], results["logits"][0], atol=1e-10, rtol=1e-12)
    for hidden, logits, want in zip(results["hidden"][1], results["logits"][1], expected, strict=True):
        torch.testing.assert_close(hidden, logits, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(hidden, want, atol=1e-6, rtol=1e-6)
