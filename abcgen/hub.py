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
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abcgen.controls import CONTROL_NAMES, OTHER, ControlVocabulary
from abcgen.controls import FILENAME as CONTROL_VOCABULARY_FILE
from abcgen.errors import AbcgenError, ConfigError
from abcgen.model_folder import ADAPTER_DIR, check_model_folder, merged_weight_files, model_fingerprint

log = logging.getLogger(__name__)

CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "hub_cards" / "model_card.md"
CARD_FILE = "README.md"
GENERATION_FILE = "abcgen_generation.json"  # decoding and constraint defaults, music vocabulary description
TRAIN_CONFIG_FILE = "abcgen_train_config.yaml"  # the pipeline reads the trained conditions from it
TRAINING_SUMMARY_FILE = "training_summary.json"
EVALUATION_DIR = "evaluation"  # report.json, report.md and the plots, in the repository
SAMPLES_DIR = "samples"  # rendered sample audio / MIDI, in the repository
REPORT_SCHEMA_VERSION = 1

# Tokenizer files any Hugging Face tokenizer may save; the ones present are copied.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")
MODEL_CONFIG_FILES = ("config.json", "model.safetensors.index.json")
SAMPLE_MEDIA_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".mid")
CARD_TAGS = ("music", "symbolic-music", "abc-notation", "abcgen")
DEFAULT_LICENSE = "apache-2.0"
DEFAULT_TIMEOUT_S = 60.0
NUM_CARD_SAMPLES = 4
NUM_CARD_VALUES = 24  # condition values listed per condition in the card
REDACTED = "<redacted token>"
SMALL_MODEL_PARAMETERS = 100_000_000  # below this the card says the model is a demonstration

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"


class PublishError(AbcgenError):
    """Talking to the Hub failed (unreachable, token rejected, commit refused); the message says at which
    step and what state the repository was left in."""


@dataclass(frozen=True)
class PublishResult:
    """What ``publish`` did. ``files`` are the repository's paths; ``local_dir`` is set for a local write,
    ``commit_url`` for a push (``created_repo`` says whether the repository was new)."""

    repo_id: str
    files: list[str]
    local_dir: Path | None = None
    commit_url: str | None = None
    created_repo: bool = False


# --- 1. checks --------------------------------------------------------------------------------------------

def check_repo_id(repo_id: str) -> str:
    """``owner/name`` with the Hub's characters (letters, digits, ``-``, ``_``, ``.``; no ``--``/``..``)."""
    if not re.fullmatch(f"{_REPO_PART}/{_REPO_PART}", repo_id or "") or "--" in repo_id or ".." in repo_id \
            or repo_id.endswith(".git"):
        raise ConfigError(f"repo id {repo_id!r} is not OWNER/NAME: give your user or organisation name, a slash and "
                          "the repository name (letters, digits, '-', '_', '.'; at most 96 characters each), e.g. "
                          "--repo-id alice/irish-jigs")
    return repo_id


def load_report(report_dir: str | Path, model_dir: str | Path) -> dict[str, Any]:
    """``REPORT_DIR/report.json``, checked: schema, and written for this model (same fingerprint)."""
    path = Path(report_dir) / "report.json"
    if not path.is_file():
        raise ConfigError(f"no evaluation report at {path}: run `abcgen evaluate --model {model_dir} --out "
                          f"{report_dir}` first (or pass --no-eval to publish without one)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); re-run abcgen evaluate") from exc
    version = report.get("schema_version") if isinstance(report, dict) else None
    if version != REPORT_SCHEMA_VERSION:
        raise ConfigError(f"{path}: report schema_version {version!r}, this abcgen reads {REPORT_SCHEMA_VERSION}; "
                          "re-run abcgen evaluate")
    stated = (report.get("model") or {}).get("fingerprint")
    actual = model_fingerprint(model_dir)
    if stated is None:
        raise ConfigError(f"the evaluation report {path} names no model fingerprint (it scores ABC files, not a "
                          f"model): run `abcgen evaluate --model {model_dir}` and publish with that report")
    if stated != actual:
        raise ConfigError(f"the evaluation report {path} was written for another model (fingerprint {stated!r}, "
                          f"model {(report.get('model') or {}).get('path')!r}), not for {model_dir} (fingerprint "
                          f"{actual!r}): re-run `abcgen evaluate --model {model_dir}` and publish with that report")
    missing_plots = [name for name in report.get("plots", []) if not (Path(report_dir) / name).is_file()]
    if missing_plots:
        raise ConfigError(f"the evaluation report {path} lists plots that are not in {report_dir}: "
                          f"{', '.join(missing_plots)}; re-run abcgen evaluate")
    return report


# --- 2. assembling the repository --------------------------------------------------------------------------

def assemble_repository(
    model_dir: str | Path,
    repo_id: str,
    destination: str | Path,
    *,
    report: dict[str, Any] | None,
    report_dir: str | Path | None,
    adapter_only: bool = False,
    license: str = DEFAULT_LICENSE,  # noqa: A002 -- the card's metadata key
    datasets: Sequence[str] = (),
) -> list[str]:
    """Write the repository's files into the new folder ``destination``; returns their paths, sorted.

    ``report`` is ``load_report``'s result (``None``: published without evaluation)."""
    model_dir, out = Path(model_dir), Path(destination)
    out.mkdir(parents=True)
    if adapter_only:
        shutil.copytree(model_dir / ADAPTER_DIR, out / ADAPTER_DIR)
    else:
        for path in merged_weight_files(model_dir):
            shutil.copyfile(path, out / path.name)
        _copy_present(model_dir, out, MODEL_CONFIG_FILES)
    _copy_present(model_dir, out, TOKENIZER_FILES + (CONTROL_VOCABULARY_FILE, "generation_config.json",
                                                      TRAIN_CONFIG_FILE, TRAINING_SUMMARY_FILE))
    media: list[str] = []
    if report is not None and report_dir is not None:
        report_dir = Path(report_dir)
        (out / EVALUATION_DIR).mkdir()
        _copy_present(report_dir, out / EVALUATION_DIR, ("report.json", "report.md", *report.get("plots", [])))
        for path in sorted(p for p in report_dir.rglob("*") if p.suffix.lower() in SAMPLE_MEDIA_SUFFIXES):
            (out / SAMPLES_DIR).mkdir(exist_ok=True)
            shutil.copyfile(path, out / SAMPLES_DIR / path.name)
            media.append(f"{SAMPLES_DIR}/{path.name}")
    generation = generation_settings(model_dir, adapter_only=adapter_only)
    (out / GENERATION_FILE).write_text(json.dumps(generation, indent=1, ensure_ascii=False), encoding="utf-8")
    files = _repository_files(out) + [CARD_FILE]
    card = render_card(model_dir, repo_id, report=report, adapter_only=adapter_only, license=license,
                       datasets=datasets, generation=generation, media=media, files=sorted(files))
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    return _repository_files(out)


def generation_settings(model_dir: str | Path, *, adapter_only: bool = False) -> dict[str, Any]:
    """``abcgen_generation.json``: the pipeline's decoding defaults (constrained decoding on), the conditions
    the model was trained with, the music vocabulary the constraint works over, and what an adapter needs
    to be loaded (the embedding rows its base must be resized to)."""
    from transformers import AutoTokenizer

    from abcgen.generation.constraints import music_vocabulary
    from abcgen.generation.pipeline import STRUCTURAL, TASK, AbcGenerationPipeline, trained_conditions

    defaults = inspect.signature(AbcGenerationPipeline._sanitize_parameters).parameters
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    train = _train_config(model_dir)
    return {
        "schema_version": 1,
        "task": TASK,
        "decoding": {name: defaults[name].default
                     for name in ("constrained", "temperature", "top_p", "max_new_tokens")},
        "max_new_tokens_note": "null: the pipeline budgets enough tokens for the requested bars",
        "trained_conditions": list(trained_conditions(model_dir)),
        "structural_conditions": list(STRUCTURAL),
        "music_vocabulary": music_vocabulary(tokenizer).describe(),
        "embedding_rows": config.get("vocab_size"),
        "method": train.get("model", {}).get("method"),
        "base_model": train.get("model", {}).get("name_or_path") or None,
        "adapter_only": adapter_only,
    }


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
    """The model card (``README.md``): ``hub_cards/model_card.md`` rendered through ``ModelCard``."""
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


def validate_repository(folder: str | Path, *, adapter_only: bool, secrets: Sequence[str | None] = ()) -> None:
    """Refuse an assembled repository that lacks a piece, whose card metadata does not parse, or that
    contains a secret (the token) in any file."""
    from huggingface_hub import ModelCard

    folder = Path(folder)
    required = [CARD_FILE, CONTROL_VOCABULARY_FILE, GENERATION_FILE, "tokenizer_config.json"]
    required += [f"{ADAPTER_DIR}/adapter_config.json"] if adapter_only else ["config.json"]
    missing = [name for name in required if not (folder / name).is_file()]
    if not adapter_only and not merged_weight_files(folder):
        missing.append("*.safetensors")
    if missing:
        raise ConfigError(f"the assembled repository lacks {', '.join(missing)}; nothing was published")
    card = ModelCard((folder / CARD_FILE).read_text(encoding="utf-8"))
    if not card.data.get("pipeline_tag"):
        raise ConfigError("the rendered model card has no metadata: check hub_cards/model_card.md starts with the "
                          "'---' metadata block; nothing was published")
    for secret in filter(None, secrets):
        for path in folder.rglob("*"):
            if path.is_file() and _file_contains(path, secret.encode()):
                raise ConfigError(f"the assembled repository file {path.relative_to(folder)} contains the Hugging "
                                  "Face token; remove it from the model folder or report; nothing was published")


# --- 3. publishing --------------------------------------------------------------------------------------

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
) -> PublishResult:
    """Check, assemble and validate the repository, then push it in one commit (or write it to
    ``local_dir`` without pushing). See the module docstring."""
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
        _check_local_target(local)
        local.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as network:
        if local is None:
            network.enter_context(_redacted_logs(token))
            network.enter_context(_network_timeout(timeout_s))
            # before the (slow) assembly: a rejected token or an unreachable Hub fails within seconds
            check_token(token)
        # Next to the target for a local write, so the finished folder is moved into place by a rename.
        with tempfile.TemporaryDirectory(prefix=".abcgen-publish-", dir=local.parent if local else None) as tmp:
            folder = Path(tmp) / "repository"
            log.info("assembling %s from %s", repo_id, model_dir)
            files = assemble_repository(model_dir, repo_id, folder, report=report, report_dir=report_dir,
                                        adapter_only=adapter_only, license=license, datasets=datasets)
            validate_repository(folder, adapter_only=adapter_only, secrets=[token])
            if local is not None:
                _move_into_place(folder, local)
                log.info("wrote %d files of %s to %s (not pushed)", len(files), repo_id, local)
                return PublishResult(repo_id=repo_id, files=files, local_dir=local)
            commit_url, created = push_repository(folder, files, repo_id, private=private, token=token,
                                                  fingerprint=model_fingerprint(model_dir))
    return PublishResult(repo_id=repo_id, files=files, commit_url=commit_url, created_repo=created)


def check_token(token: str) -> str:
    """The user the Hub says the token belongs to; ``PublishError`` if it is rejected or the Hub is out of reach."""
    from huggingface_hub import HfApi, constants

    try:
        user = HfApi(token=token).whoami()["name"]
    except Exception as exc:  # HTTP, network or offline-mode failure of the client: one redacted report
        raise PublishError(f"publishing to {constants.ENDPOINT} failed while checking the token: "
                           f"{_explain(exc, token)}; nothing was created or committed") from None
    log.info("the Hub at %s accepts the token of %s", constants.ENDPOINT, user)
    return str(user)


def push_repository(folder: Path, files: Sequence[str], repo_id: str, *, private: bool, token: str,
                    fingerprint: str) -> tuple[str, bool]:
    """Create the repository if needed and commit every file of ``folder`` in one commit. Returns the commit
    URL and whether the repository was created. Raises ``PublishError`` naming the failed step."""
    from huggingface_hub import CommitOperationAdd, HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(token=token)
    endpoint = constants.ENDPOINT
    step, created, existed = "looking the repository up", False, False
    try:
        try:
            info = api.repo_info(repo_id)
            existed = True
        except RepositoryNotFoundError:
            info = None
        if info is not None and private and not info.private:
            raise PublishError(f"--private was given but {repo_id} already exists on {endpoint} and is public: make it "
                               "private first or publish under another name; nothing was committed")
        if not existed:
            step = "creating the repository"
            api.create_repo(repo_id, private=private)
            created = True
        step = "committing the files"
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
        commit = api.create_commit(repo_id, operations, commit_message=f"abcgen publish (model {fingerprint})")
    except PublishError:
        raise
    except Exception as exc:  # every failure of the client (HTTP, network, offline mode) gets the same report
        if created:
            state = (f"the repository {repo_id} was created but nothing was committed to it; re-run the same command "
                     "to publish into it, or delete it")
        elif existed:
            state = f"nothing was committed; {repo_id} is unchanged"
        else:
            state = "nothing was created or committed"
        # from None: the client's exception chain is not redacted, and a caller's traceback must not show it
        raise PublishError(f"publishing to {endpoint} failed while {step}: {_explain(exc, token)}; {state}") from None
    log.info("committed %d files to %s in one commit: %s", len(files), repo_id, commit.commit_url)
    return str(commit.commit_url), created


# --- helpers -----------------------------------------------------------------------------------------------

def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (the token) replaced."""
    return text.replace(secret, REDACTED) if secret else text


def _explain(exc: BaseException, token: str | None) -> str:
    """One redacted line saying what went wrong and, for the usual causes, what to do."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE=1 is set; publishing needs the network (unset it, or use --local-dir)"
    if isinstance(exc, httpx2.TimeoutException):
        return f"the Hub did not answer in time ({type(exc).__name__}); check HF_ENDPOINT and the network"
    if isinstance(exc, httpx2.TransportError):
        return (f"cannot reach the Hub ({type(exc).__name__}: {redact(str(exc), token)}); check HF_ENDPOINT and "
                "the network")
    status = getattr(getattr(exc, "response", None), "status_code", None) if isinstance(exc, HfHubHTTPError) else None
    first_line = redact(str(exc), token).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    server_says = redact(str(getattr(exc, "server_message", "") or ""), token).strip()
    if server_says and server_says not in first_line:
        first_line += f" (the Hub says: {server_says.splitlines()[0]})"
    if status == 401:
        return f"the Hub rejected the token (401 Unauthorized: {first_line}); set HF_TOKEN to a valid write token"
    if status == 403:
        return f"the token may not write there (403 Forbidden: {first_line}); check the owner and the token's role"
    return f"{type(exc).__name__}: {first_line}"


class _RedactingFilter(logging.Filter):
    """Rewrites any log record whose text contains the token (attached to every handler while publishing)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = redact(message, self.secret), ()
        return True


@contextlib.contextmanager
def _redacted_logs(secret: str | None) -> Iterator[None]:
    if not secret:
        yield
        return
    handlers = set(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers.update(getattr(logger, "handlers", []))
    redacting = _RedactingFilter(secret)
    for handler in handlers:
        handler.addFilter(redacting)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redacting)


@contextlib.contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    """huggingface_hub's shared HTTP client waits forever by default; an unreachable endpoint must fail.
    ``seconds`` bounds each connect, read and write (not a whole upload)."""
    import httpx2
    from huggingface_hub import get_session

    session = get_session()
    previous = session.timeout
    session.timeout = httpx2.Timeout(seconds)
    try:
        yield
    finally:
        session.timeout = previous


def _check_local_target(local: Path) -> None:
    """A local target must be new, empty, or a repository ``abcgen publish`` wrote before (replaced)."""
    if local.exists() and (not local.is_dir() or (any(local.iterdir()) and not (local / GENERATION_FILE).is_file())):
        raise ConfigError(f"--local-dir {local} exists and was not written by abcgen publish: give a new or empty "
                          "folder (it is replaced only when it holds an earlier published repository)")


def _move_into_place(folder: Path, local: Path) -> None:
    """Rename the finished folder to ``local``; an earlier repository there is removed only afterwards."""
    previous = None
    if local.exists():
        previous = local.with_name(f".{local.name}.previous")
        if previous.exists():
            shutil.rmtree(previous)
        local.rename(previous)
    folder.rename(local)
    if previous is not None:
        shutil.rmtree(previous)


def _copy_present(source: Path, target: Path, names: Sequence[str]) -> None:
    for name in names:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def _repository_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _file_contains(path: Path, needle: bytes) -> bool:
    """Streamed search, with an overlap so a needle split across two reads is still found."""
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle):]
    return False


def _json_or_empty(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _train_config(model_dir: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(model_dir) / TRAIN_CONFIG_FILE
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def _looks_like_hub_id(name: str) -> bool:
    """A hub id (``owner/name``), not a local folder such as the quickstart's ``runs/quickstart/base/final``:
    only hub ids belong in the card's ``base_model`` metadata."""
    return bool(re.fullmatch(f"{_REPO_PART}/{_REPO_PART}", name)) and not Path(name).exists()


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
    from abcgen.generation.pipeline import STRUCTURAL

    rows = []
    for name in CONTROL_NAMES:
        values = vocabulary.values.get(name) or {}
        if not values or (name not in trained and name not in STRUCTURAL):
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
