"""Step 3 of ``abcgen publish``: talk to the Hub -- check the token (``whoami``), create the repository and
commit every file in ONE commit -- with the token kept secret: error texts and log records are redacted,
and every network operation has a timeout. A failure says at which step and what state it left."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from abcgen.hub.layout import REDACTED, PublishError

# One logger for the whole publish command (its records name "abcgen.hub", as before the split).
log = logging.getLogger("abcgen.hub")


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
