"""How many tokens a tune costs with the music tokenizer against the base alone, and round-trip checks."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from transformers import PreTrainedTokenizerBase

from abcgen.tokenization.extend import abc_to_ids, ids_to_abc


@dataclass(frozen=True)
class TokenCountStats:
    """Tokens per tune over a list of tunes (no BOS/EOS counted). ``p98`` is what a training ``max_length``
    must hold (plus the control prefix) to keep 98 % of the tunes whole."""

    num_tunes: int
    mean: float
    median: float
    p90: float
    total: int
    p98: float = 0.0
    max: int = 0


def token_counts(tokenizer: PreTrainedTokenizerBase, abc_texts: Sequence[str]) -> list[int]:
    """Number of tokens of each text, without special tokens."""
    return [len(ids) for ids in tokenizer(list(abc_texts), add_special_tokens=False)["input_ids"]] if abc_texts else []


def count_stats(counts: Sequence[int]) -> TokenCountStats:
    """Mean, median, 90th and 98th percentile (nearest rank) and the longest of token counts."""
    if not counts:
        return TokenCountStats(0, 0.0, 0.0, 0.0, 0)
    ranked = sorted(counts)

    def rank(percent: int) -> float:
        return float(ranked[min(len(ranked) - 1, max(0, -(-percent * len(ranked) // 100) - 1))])

    return TokenCountStats(len(counts), round(statistics.fmean(counts), 2), float(statistics.median(counts)),
                           rank(90), sum(counts), rank(98), ranked[-1])


def round_trip_failures(tokenizer: PreTrainedTokenizerBase, abc_texts: Sequence[str]) -> list[int]:
    """Indices of the texts for which ``ids_to_abc(abc_to_ids(text)) != text`` (with BOS/EOS added, as
    training will see them; ``ids_to_abc`` drops them again)."""
    return [
        i for i, text in enumerate(abc_texts)
        if ids_to_abc(tokenizer, abc_to_ids(tokenizer, text, add_special_tokens=True)) != text
    ]


def compare_tokenizers(
    tokenizer: PreTrainedTokenizerBase, base_tokenizer: PreTrainedTokenizerBase, abc_texts: Sequence[str]
) -> dict[str, object]:
    """Tokens per tune for the music tokenizer and the base, their ratio, and round-trip failures."""
    music = count_stats(token_counts(tokenizer, abc_texts))
    base = count_stats(token_counts(base_tokenizer, abc_texts))
    failures = round_trip_failures(tokenizer, abc_texts)
    return {
        "num_tunes": len(abc_texts),
        "music": asdict(music),
        "base": asdict(base),
        "token_ratio": round(music.total / base.total, 4) if base.total else None,
        "num_round_trip_failures": len(failures),
        "round_trip_failures": failures[:20],
    }
