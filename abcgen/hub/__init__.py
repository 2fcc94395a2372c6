"""Publishing a model folder as a Hugging Face Hub repository (``abcgen publish``).

    abcgen publish --model runs/quickstart/lora/final --repo-id me/irish-jigs --report runs/quickstart/eval
    abcgen publish --model runs/quickstart/lora/final --repo-id me/irish-jigs --report ... --local-dir hub/

Three steps, in this order, so that nothing half-made is ever pushed:

1. **Check** the request: the repo id is ``owner/name``, the model folder holds every piece
   (``abcgen.model_folder.check_model_folder``), and the evaluation report was written for *this* model
   (its ``model.fingerprint`` equals ``model_fingerprint`` of the folder). Without a report publishing is
   refused unless ``no_eval`` is set. A push then asks the Hub who the token belongs to (``whoami``), so a
   rejected token or an unreachable Hub fails in seconds, before anything is assembled or created.
2. **Assemble** the whole repository in a temporary folder -- merged weights in safetensors (or, with
   ``adapter_only``, peft's ``adapter/``), tokenizer, ``control_vocabulary.json``, the training config the
   pipeline reads its conditions from, ``generation_config.json`` and ``abcgen_generation.json`` (decoding
   and constraint defaults), the model card, the evaluation report and plots, sample audio -- and
   **validate** it: every required file, card metadata that parses, no token in any file.
3. **Push** it in ONE commit (``HfApi.create_repo`` + ``HfApi.create_commit``) or, with ``local_dir``,
   move the finished folder into place. A failure says what failed and what state it left: nothing
   created, or the repository created but nothing committed.

The token comes from ``huggingface_hub.get_token()`` (``HF_TOKEN`` or ``hf auth login``). It is never
logged, printed or written: error texts are redacted before they are re-raised, log records are redacted
while publishing, and the assembled folder is scanned for it before anything leaves the machine.

Where each step lives: ``abcgen.hub.checks`` (1), ``abcgen.hub.assemble`` and ``abcgen.hub.card`` (2),
``abcgen.hub.push`` (3, with the token redaction); ``abcgen.hub.layout`` names the repository's files.
``publish`` below runs them in order; everything public is importable from ``abcgen.hub``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from abcgen.atomic import atomic_output_dir, check_apart
from abcgen.errors import ConfigError
from abcgen.hub.assemble import assemble_repository, generation_settings, validate_repository
from abcgen.hub.card import render_card
from abcgen.hub.checks import _check_local_target, check_repo_id, load_report, report_plots
from abcgen.hub.layout import (
    CARD_FILE,
    CARD_TAGS,
    CARD_TEMPLATE,
    DEFAULT_LICENSE,
    DEFAULT_TIMEOUT_S,
    EVALUATION_DIR,
    GENERATION_FILE,
    MODEL_CONFIG_FILES,
    NUM_CARD_SAMPLES,
    NUM_CARD_VALUES,
    PLOT_SUFFIXES,
    REDACTED,
    REPORT_SCHEMA_VERSION,
    SAMPLE_MEDIA_SUFFIXES,
    SAMPLES_DIR,
    SMALL_MODEL_PARAMETERS,
    TOKENIZER_FILES,
    TRAIN_CONFIG_FILE,
    TRAINING_SUMMARY_FILE,
    PublishError,
    PublishResult,
)
from abcgen.hub.push import _network_timeout, _redacted_logs, check_token, push_repository, redact
from abcgen.model_folder import check_model_folder, model_fingerprint

__all__ = [
    "CARD_FILE", "CARD_TAGS", "CARD_TEMPLATE", "DEFAULT_LICENSE", "DEFAULT_TIMEOUT_S", "EVALUATION_DIR",
    "GENERATION_FILE", "MODEL_CONFIG_FILES", "NUM_CARD_SAMPLES", "NUM_CARD_VALUES", "PLOT_SUFFIXES", "REDACTED",
    "REPORT_SCHEMA_VERSION", "SAMPLE_MEDIA_SUFFIXES", "SAMPLES_DIR", "SMALL_MODEL_PARAMETERS", "TOKENIZER_FILES",
    "TRAIN_CONFIG_FILE", "TRAINING_SUMMARY_FILE", "PublishError", "PublishResult", "assemble_repository",
    "check_repo_id", "check_token", "generation_settings", "load_report", "publish", "push_repository", "redact",
    "render_card", "report_plots", "validate_repository",
]

log = logging.getLogger(__name__)  # "abcgen.hub": the logger of every step of the publish command


def publish(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    adapter_only: bool = False,
    report_dir: str | Path | None = None,
    no_eval: bool = False,
    local_dir: str | Path | None = None,
    license: str = DEFAULT_LICENSE,  # noqa: A002 -- the card's metadata key
    datasets: Sequence[str] = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    overwrite: bool = False,
) -> PublishResult:
    """Check, assemble and validate the repository, then push it in one commit (or write it to
    ``local_dir`` without pushing; an earlier repository there is replaced only with ``overwrite``, and a
    folder publish did not write never). See the module docstring."""
    from huggingface_hub import get_token

    repo_id = check_repo_id(repo_id)
    model_dir = Path(model_dir)
    missing = check_model_folder(model_dir, adapter=adapter_only)
    if missing:
        raise ConfigError(f"cannot publish {model_dir}: " + "; ".join(missing))
    if report_dir is not None and no_eval:
        raise ConfigError("--report and --no-eval contradict each other: give the report, or --no-eval to publish "
                          "without one")
    if report_dir is None and not no_eval:
        raise ConfigError(f"refusing to publish {model_dir} without an evaluation report: the card would state no "
                          f"validity or copy rate. Run `abcgen evaluate --model {model_dir} --out REPORT_DIR` and pass "
                          "--report REPORT_DIR, or pass --no-eval to publish unevaluated (the card says so)")
    report = load_report(report_dir, model_dir) if report_dir is not None else None
    token = get_token()
    if local_dir is None and not token:
        raise ConfigError("no Hugging Face token: set HF_TOKEN or run `hf auth login` with a token that can write; "
                          "nothing was published (use --local-dir to write the repository to a folder instead)")
    local = Path(local_dir).resolve() if local_dir is not None else None
    if local is not None:
        _check_local_target(local, overwrite=overwrite)
        check_apart(local, [("--model", model_dir), ("--report", report_dir)], flag="--local-dir")
        # Assembled in a temporary sibling renamed into place (abcgen.atomic): an earlier repository there
        # stays whole until the new one is complete, and only folders publish itself made are ever removed.
        with atomic_output_dir(local, overwrite=overwrite) as folder:
            log.info("assembling %s from %s", repo_id, model_dir)
            files = assemble_repository(model_dir, repo_id, folder, report=report, report_dir=report_dir,
                                        adapter_only=adapter_only, license=license, datasets=datasets)
            validate_repository(folder, adapter_only=adapter_only, secrets=[token])
        log.info("wrote %d files of %s to %s (not pushed)", len(files), repo_id, local)
        return PublishResult(repo_id=repo_id, files=files, local_dir=local)
    with contextlib.ExitStack() as network:
        if local is None:
            network.enter_context(_redacted_logs(token))
            network.enter_context(_network_timeout(timeout_s))
            # before the (slow) assembly: a rejected token or an unreachable Hub fails within seconds
            check_token(token)
        with tempfile.TemporaryDirectory(prefix="abcgen-publish-") as tmp:
            folder = Path(tmp) / "repository"
            log.info("assembling %s from %s", repo_id, model_dir)
            files = assemble_repository(model_dir, repo_id, folder, report=report, report_dir=report_dir,
                                        adapter_only=adapter_only, license=license, datasets=datasets)
            validate_repository(folder, adapter_only=adapter_only, secrets=[token])
            commit_url, created = push_repository(folder, files, repo_id, private=private, token=token,
                                                  fingerprint=model_fingerprint(model_dir))
    return PublishResult(repo_id=repo_id, files=files, commit_url=commit_url, created_repo=created)
