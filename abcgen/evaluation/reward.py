"""The reward of preference alignment (``train/align.py``), built from the evaluation suite, and the pairs.

A tune's reward is a weighted sum of terms the evaluation already measures (weights: the config's
``align.reward``, ``abcgen.training.config.RewardSettings``):

* **validity is a gate, not a term**: a tune that fails our checks (bars of the meter's length, repeats,
  not truncated; ``SampleCheck``) or abc2midi, the peer checker, gets no reward (``None``) and is never
  *chosen*; it is the first candidate for *rejected*;
* ``key``: the key Krumhansl-Schmuckler finds in the notes -- 1 the requested tonic and mode, 0.5 the
  requested key signature only (a relative key), 0 neither;
* ``rhythm``: the probability a rhythm classifier (``StyleClassifier``) trained on the training split gives
  the requested rhythm. Its feature hash is salted with another seed than ``abcgen evaluate``'s (whose
  rhythm adherence is then a second, differently-hashed classifier's verdict; the two share the features,
  so the rewarded and the reported rhythm adherence are not independent -- the held-out rows are);
* ``tonic_ending``: the last melody note is the requested key's tonic;
* ``repetition`` and ``repeated_notes``: 1 at the training tunes' median share of bars repeating an earlier
  bar (``bar_repeats``) and of notes repeating the note before (``repeated_notes``), falling linearly to 0
  at a distance of one median: structure like the corpus's, neither a loop nor a random walk;
* ``copy_penalty``: subtracted when the melody is within ``copy_threshold`` (normalised Levenshtein) of a
  training tune (``NoveltyIndex``, as ``abcgen evaluate``'s copy rate): copying earns nothing;
* ``diversity``: the share of the tune's bar bigrams (two consecutive bars' notes) that no other tune of the
  round has: a round of near-identical tunes earns less.

``build_pairs`` makes up to ``align.pairs_per_request`` disjoint pairs per request: its best valid tune against
its worst (an invalid one if there is one), the second best against the second worst, ..., each kept when
their rewards differ by at least ``min_margin``. What the reward never sees --
overlap with real tunes, perplexity on real test tunes, the pitch and rhythm descriptors -- is what
``benchmarks/align.py`` reports beside it.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from abcgen.notation.keys import parse_key
from abcgen.notation.piece import Piece, read_pieces
from abcgen.training.config import RewardSettings

log = logging.getLogger(__name__)

MIN_RHYTHM_TUNES = 10  # a rhythm label with fewer training tunes is left out of the classifier
TERMS = ("key", "rhythm", "tonic_ending", "repetition", "repeated_notes", "diversity")


@dataclass
class TuneReward:
    """One tune's reward: ``total`` is ``None`` for an invalid tune (the gate); ``terms`` are each in [0, 1]
    before weighting (``None`` where the request or the corpus leaves a term undefined, e.g. no rhythm
    asked); ``copy`` is the similarity to the nearest training tune, ``copied`` whether it reached the
    copy threshold (and lost the copy penalty)."""

    valid: bool
    total: float | None
    terms: dict[str, float | None] = field(default_factory=dict)
    copy: float | None = None
    copied: bool = False
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _closeness(value: float, target: float) -> float | None:
    """1 at ``target``, falling linearly to 0 at one ``target`` away (a floor of 0.05 keeps a near-zero median
    from making every tune score 0); ``None`` for an undefined value."""
    if math.isnan(value) or math.isnan(target):
        return None
    return max(0.0, 1.0 - abs(value - target) / max(target, 0.05))


def _bar_bigrams(piece: Piece) -> list[tuple[str, str]]:
    texts = [t for t in piece.bar_texts if t.strip()]
    return list(zip(texts, texts[1:], strict=False))


def unique_bigram_shares(pieces: Sequence[Piece]) -> list[float | None]:
    """Per piece: the share of its bar bigrams that no *other* piece of the set has (``None`` without a
    bigram). A bigram repeated inside one tune (a repeated section) is still its own."""
    per_piece = [set(_bar_bigrams(p)) for p in pieces]
    owners: Counter[tuple[str, str]] = Counter()
    for bigrams in per_piece:
        owners.update(bigrams)
    return [sum(owners[b] == 1 for b in bigrams) / len(bigrams) if bigrams else None for bigrams in per_piece]


class RewardScorer:
    """Scores generated tunes against their requests; built once from the training split (its pieces, the
    rhythm labels) and reused every round. ``seed`` salts the rhythm classifier's feature hash."""

    def __init__(self, train_rows: Sequence[Mapping[str, Any]], settings: RewardSettings, *, seed: int = 1) -> None:
        from abcgen.evaluation.metrics import piece_values
        from abcgen.evaluation.novelty import NoveltyIndex
        from abcgen.evaluation.style import StyleClassifier

        self.settings = settings
        pieces = read_pieces([str(r["abc"]) for r in train_rows], [f"train #{i}" for i in range(len(train_rows))])
        values = [piece_values(p) for p in pieces]
        self.targets = {name: _median([v[name] for v in values]) for name in ("bar_repeats", "repeated_notes")}
        self.novelty = NoveltyIndex(pieces) if settings.copy_penalty else None
        self.rhythm = None
        labels = [str(r.get("rhythm") or "") for r in train_rows]
        keep = [i for i, y in enumerate(labels) if y and y != "other"]
        counts = Counter(labels[i] for i in keep)
        if settings.rhythm and sum(n >= MIN_RHYTHM_TUNES for n in counts.values()) >= 2:
            self.rhythm = StyleClassifier(min_count=MIN_RHYTHM_TUNES, seed=seed).fit(
                [pieces[i] for i in keep], [labels[i] for i in keep])
        elif settings.rhythm:
            log.warning("reward: the training split has fewer than two rhythm labels of %d tunes or more (%s); the "
                        "rhythm term is off", MIN_RHYTHM_TUNES, dict(counts.most_common(5)))
        log.info("reward: %d training tunes; median bar repeats %.3f, repeated notes %.3f; rhythm classifier "
                 "over %s", len(pieces), self.targets["bar_repeats"], self.targets["repeated_notes"],
                 ", ".join(self.rhythm.labels) if self.rhythm else "none")

    def score(self, tunes: Sequence[Mapping[str, Any]], requests: Sequence[Mapping[str, Any]],
              pieces: Sequence[Piece] | None = None) -> list[TuneReward]:
        """One ``TuneReward`` per tune. ``tunes[i]``: a pipeline result (``abc``, ``valid``, ``problems``);
        ``requests[i]``: the conditions it was generated for (``key``, ``rhythm``, ...); ``pieces``: the
        tunes already read (``read_pieces`` of their ``abc``), when the caller needs them too."""
        from abcgen.evaluation.keys import key_adherence
        from abcgen.evaluation.metrics import abc2midi_valid, piece_values

        if len(tunes) != len(requests):
            raise ValueError(f"{len(tunes)} tunes for {len(requests)} requests: give one request per tune")
        s = self.settings
        if pieces is None:
            pieces = read_pieces([str(t["abc"]) for t in tunes], [f"generated #{i}" for i in range(len(tunes))])
        elif len(pieces) != len(tunes):
            raise ValueError(f"{len(pieces)} pieces for {len(tunes)} tunes: give one piece per tune")
        peer = abc2midi_valid(pieces) if s.abc2midi else [True] * len(pieces)
        valid = [bool(t["valid"]) and p.ok and ok for t, p, ok in zip(tunes, pieces, peer, strict=True)]
        kept = [p for p, v in zip(pieces, valid, strict=True) if v]
        shares = iter(unique_bigram_shares(kept))
        probabilities = self.rhythm.probabilities(kept) if self.rhythm is not None and kept else None
        column = {label: i for i, label in enumerate(self.rhythm.labels)} if self.rhythm is not None else {}
        out: list[TuneReward] = []
        kept_index = 0
        for tune, piece, request, ok, peer_ok in zip(tunes, pieces, requests, valid, peer, strict=True):
            if not ok:
                problems = list(tune.get("problems") or []) + ([] if peer_ok else ["abc2midi rejects the tune"])
                out.append(TuneReward(False, None, problems=problems or ["not a valid tune"]))
                continue
            terms: dict[str, float | None] = dict.fromkeys(TERMS)
            key = parse_key(str(request["key"])) if request.get("key") else None
            if key is not None and key.tonic and piece.notes:
                hit = key_adherence(piece, key)
                terms["key"] = 1.0 if hit["exact"] else 0.5 if hit["signature"] else 0.0
                terms["tonic_ending"] = float(piece.melody[-1].pitch % 12 == key.tonic_semitone())
            rhythm = str(request.get("rhythm") or "")
            if probabilities is not None and rhythm in column:
                terms["rhythm"] = float(probabilities[kept_index, column[rhythm]])
            values = piece_values(piece)
            terms["repetition"] = _closeness(values["bar_repeats"], self.targets["bar_repeats"])
            terms["repeated_notes"] = _closeness(values["repeated_notes"], self.targets["repeated_notes"])
            terms["diversity"] = next(shares)
            kept_index += 1
            total = sum(getattr(s, name) * value for name, value in terms.items() if value is not None)
            similarity, copied = None, False
            if self.novelty is not None:
                similarity = self.novelty.nearest(piece).similarity
                copied = not math.isnan(similarity) and similarity >= s.copy_threshold
                if copied:
                    total -= s.copy_penalty
            out.append(TuneReward(True, round(total, 6), {k: _round(v) for k, v in terms.items()},
                                  _round(similarity), copied))
        return out


def _median(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)


@dataclass
class PairOutcome:
    """Pairs built from one round and what happened to every request (requests = those with at least one
    pair + skipped)."""

    pairs: list[tuple[int, int]]  # (chosen, rejected) indices into the round's tunes
    skipped: dict[str, int]  # reason -> requests without any pair


def build_pairs(groups: Sequence[Sequence[int]], rewards: Sequence[TuneReward], min_margin: float,
                pairs_per_request: int = 1) -> PairOutcome:
    """Up to ``pairs_per_request`` disjoint (chosen, rejected) pairs per group of tunes generated for the same
    request: the best valid tune against the worst, the second best against the second worst, and so on,
    where "worst" puts the invalid tunes first (in generation order) and then the valid ones by rising reward.
    An invalid tune is never chosen and no tune is in two pairs (one tune does not outweigh the others).
    Pairing stops where the two ends meet or a pair of valid tunes differs by less than ``min_margin`` (the
    pairs after it would differ by less still). A group that gives no pair -- no valid tune, or a first
    margin below ``min_margin`` -- is counted in ``skipped``. Ties keep the earlier tune."""
    pairs: list[tuple[int, int]] = []
    skipped: Counter[str] = Counter()
    for members in groups:
        scored = [i for i in members if rewards[i].valid and rewards[i].total is not None]
        if not scored:
            skipped["no valid tune"] += 1
            continue
        best = sorted(scored, key=lambda i: (-rewards[i].total, i))
        worst = [i for i in members if not rewards[i].valid] + sorted(scored, key=lambda i: (rewards[i].total, i))
        used: set[int] = set()
        for chosen, rejected in zip(best[:pairs_per_request], worst, strict=False):
            if chosen == rejected or chosen in used or rejected in used:
                break  # the two ends met
            if rewards[rejected].valid and rewards[chosen].total - rewards[rejected].total < min_margin:
                break
            pairs.append((chosen, rejected))
            used.update((chosen, rejected))
        if not used:
            skipped["margin below min_margin"] += 1
    return PairOutcome(pairs, dict(skipped))


__all__ = ["TERMS", "PairOutcome", "RewardScorer", "TuneReward", "build_pairs", "unique_bigram_shares"]
