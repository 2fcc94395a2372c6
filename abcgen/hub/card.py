"""The model card (``README.md`` of the repository): ``abcgen/assets/hub_cards/model_card.md`` rendered
through ``huggingface_hub.ModelCard`` with the card metadata, what the model was trained on, how to call
it, its conditions, and the evaluation's numbers and samples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abcgen.controls import OTHER, ControlVocabulary, condition_names
from abcgen.hub.layout import (
    CARD_TAGS,
    CARD_TEMPLATE,
    EVALUATION_DIR,
    NUM_CARD_SAMPLES,
    NUM_CARD_VALUES,
    SMALL_MODEL_PARAMETERS,
    TRAINING_SUMMARY_FILE,
    _json_or_empty,
    _looks_like_hub_id,
    _train_config,
)


def render_card(
    model_dir: str | Path,
    repo_id: str,
    *,
    report: dict[str, Any] | None,
    adapter_only: bool,
    license: str,  # noqa: A002 -- the card's metadata key
    datasets: Sequence[str],
    generation: dict[str, Any],
    media: Sequence[str],
    files: Sequence[str],
) -> str:
    """The model card (``README.md``): ``abcgen/assets/hub_cards/model_card.md`` rendered through ``ModelCard``."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model_dir = Path(model_dir)
    train = _train_config(model_dir)
    summary = _json_or_empty(model_dir / TRAINING_SUMMARY_FILE)
    vocabulary = ControlVocabulary.load(model_dir)
    trained = generation["trained_conditions"]
    base = train.get("model", {}).get("name_or_path") or None
    base_is_hub_id = bool(base) and _looks_like_hub_id(base)
    method = train.get("model", {}).get("method")
    sources = _corpus_sources(train)
    model_name = repo_id.split("/", 1)[1]
    eval_results = None
    if report is not None:
        data = report.get("data", {})
        corpus = Path(str(data.get("corpus") or "abcgen-corpus")).name
        eval_results = [
            EvalResult(task_type="text-generation", dataset_type=corpus,
                       dataset_name=f"{corpus} ({data.get('split', 'test')} split)",
                       dataset_split=data.get("split"), metric_type=metric["name"],
                       metric_name=metric.get("description") or metric["name"],
                       metric_value=metric["generated"]["value"])
            for metric in report.get("metrics", [])
            if (metric.get("generated") or {}).get("value") is not None
        ] or None
    card_data = ModelCardData(
        base_model=base if base_is_hub_id else None,
        library_name="transformers",
        license=license,
        datasets=list(datasets) or sources or None,
        tags=[*CARD_TAGS, *(["lora", "peft"] if adapter_only or method == "lora" else [])],
        pipeline_tag="text-generation",
        model_name=model_name if eval_results else None,  # model-index needs it; otherwise left out
        eval_results=eval_results,
    )
    context = {
        "repo_id": repo_id,
        "model_name": model_name,
        "adapter_only": adapter_only,
        "base_model": base,
        "base_is_hub_id": base_is_hub_id,
        "method": method or "unknown",
        "embedding_rows": generation.get("embedding_rows"),
        "example_call": _example_call(vocabulary, trained),
        "decoding": generation["decoding"],
        "training": _training_facts(train, summary, sources),
        "small_model": 0 < int((summary.get("parameters") or {}).get("total") or 0) < SMALL_MODEL_PARAMETERS,
        "conditions": _condition_rows(vocabulary, trained),
        "trained_conditions": trained,
        "condition_names": ", ".join(dict.fromkeys(["key", "meter", *trained])),
        "evaluation": _evaluation_facts(report) if report is not None else None,
        "samples": _sample_rows(report) if report is not None else [],
        "media": list(media),
        "files": list(files),
    }
    return str(ModelCard.from_template(card_data, template_path=str(CARD_TEMPLATE), **context))



def _corpus_sources(train: dict[str, Any]) -> list[str]:
    """The training corpus's sources (``config.sources`` of its ``report.json``) where the corpus is at hand."""
    corpus = train.get("data", {}).get("corpus")
    report = _json_or_empty(Path(corpus) / "report.json") if corpus else {}
    return [str(s) for s in report.get("config", {}).get("sources", [])]



def _example_call(vocabulary: ControlVocabulary, trained: Sequence[str]) -> str:
    """Keyword arguments for the card's usage snippet: the most common key/meter/rhythm combination of the
    training data (so the request is one the model has seen), 16 bars."""
    def usable(value: str) -> bool:
        return bool(value) and value != OTHER

    key = meter = rhythm = ""
    for combination in vocabulary.combinations:  # saved most common first
        parts = combination.split("|")
        if len(parts) == 3 and usable(parts[0]) and usable(parts[1]):
            key, meter, rhythm = parts
            break
    key = key or next((v for v in vocabulary.values.get("key", {}) if usable(v)), "C major")
    meter = meter or next((v for v in vocabulary.values.get("meter", {}) if usable(v)), "4/4")
    request = {"key": key, "meter": meter}
    if usable(rhythm) and "rhythm" in trained:
        request["rhythm"] = rhythm
    request["bars"] = 16
    return ", ".join(f"{name}={value!r}" for name, value in request.items())



def _condition_rows(vocabulary: ControlVocabulary, trained: Sequence[str]) -> list[dict[str, Any]]:
    """The card's condition table: conditions given as control tokens, and those the pipeline enforces
    itself (key, meter, unit length, bars, form); the others are refused by the pipeline, so not listed."""
    from abcgen.generation.pipeline import structural_conditions

    rows = []
    structural = structural_conditions()
    for name in condition_names():  # the condition registry (abcgen.controls)
        values = vocabulary.values.get(name) or {}
        if not values or (name not in trained and name not in structural):
            continue
        shown = list(values.items())[:NUM_CARD_VALUES]
        rows.append({"name": name, "trained": name in trained,
                     "value_list": ", ".join(f"{value} ({count:,})" for value, count in shown),
                     "more": max(0, len(values) - len(shown))})
    return rows



def _training_facts(train: dict[str, Any], summary: dict[str, Any], sources: Sequence[str]) -> dict[str, Any]:
    """Counts for the card (``None`` where the model folder does not say)."""
    splits = []
    for split, stats in (summary.get("data") or {}).items():
        if isinstance(stats, dict):
            counts = {k: _thousands(stats.get(k)) for k in ("tunes", "examples", "tokens", "rows")}
            splits.append({"split": split, **counts})
    parameters = summary.get("parameters") or {}
    evaluation = summary.get("eval") or {}
    return {
        "corpus": train.get("data", {}).get("corpus"),
        "sources": list(sources),
        "splits": splits,
        "steps": _thousands(summary.get("steps")),
        "tokens_seen": _thousands(summary.get("tokens_seen")),
        "parameters": _thousands(parameters.get("total")),
        "trainable": _thousands(parameters.get("trainable")),
        "first_loss": _rounded(summary.get("first_loss")),
        "final_loss": _rounded(summary.get("final_loss")),
        "eval_perplexity": _rounded(evaluation.get("eval_perplexity")),
        "seconds": summary.get("seconds"),
    }



def _evaluation_facts(report: dict[str, Any]) -> dict[str, Any]:
    metrics = []
    copy_rate = None
    for metric in report.get("metrics", []):
        unit = metric.get("unit") or ""
        row = {"name": metric["name"], "tier": metric.get("tier", ""), "description": metric.get("description", ""),
               "higher_is_better": metric.get("higher_is_better"),
               **{side: _estimate(metric.get(side), unit) for side in ("generated", "real", "floor")}}
        metrics.append(row)
        if metric["name"] == "copy_rate":
            copy_rate = row
    decoding = report.get("decoding") or {}
    per_seed = decoding.get("samples_per_seed") or decoding.get("num_samples") or 0
    perplexity = report.get("perplexity") or {}
    return {"data": report.get("data", {}), "decoding": decoding, "metrics": metrics, "copy_rate": copy_rate,
            "num_generated": len(decoding.get("seeds", [])) * int(per_seed),
            "perplexity": _rounded(perplexity.get("perplexity")), "perplexity_tunes": perplexity.get("tunes"),
            "plots": [f"{EVALUATION_DIR}/{name}" for name in report.get("plots", [])]}



def _sample_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for sample in report.get("samples", [])[:NUM_CARD_SAMPLES]:
        conditions = ", ".join(f"{k}={v}" for k, v in (sample.get("conditions") or {}).items()) or "none"
        rows.append({"abc": sample.get("abc", "").rstrip(), "conditions": conditions, "valid": sample.get("valid")})
    return rows



def _estimate(estimate: dict[str, Any] | None, unit: str) -> str:
    """``{"value": 98.0, "low": 96.1, "high": 99.2}`` -> ``"98.0 % [96.1, 99.2]"``; ``"–"`` when absent."""
    if not estimate or estimate.get("value") is None:
        return "–"
    suffix = f" {unit}" if unit else ""
    text = f"{_rounded(estimate['value'])}{suffix}"
    if estimate.get("low") is not None and estimate.get("high") is not None:
        text += f" [{_rounded(estimate['low'])}, {_rounded(estimate['high'])}]"
    return text



def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value



def _thousands(value: Any) -> str | None:
    return f"{value:,}" if isinstance(value, int) else None
