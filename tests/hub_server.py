"""A loopback **test double of the Hugging Face Hub HTTP API** -- not a Hub.

It serves, on ``127.0.0.1`` and a random port, just the part of the Hub's HTTP API that the real
``huggingface_hub`` client (2.4) calls to create a model repository, commit files to it, and download them
back, so that tests drive the real client over real HTTP with ``HF_ENDPOINT`` pointing here. Files live in
memory and vanish with the server.

Endpoints (``{repo}`` is ``owner/name``; only model repositories and the ``main`` branch, plus commit ids):

==========================================================  ===================================================
``GET  /api/whoami-v2``                                     the token's user (``HfApi.whoami``)
``GET  /api/agent-harnesses``                               the client's agent-detection registry (empty)
``POST /api/repos/create``                                  ``HfApi.create_repo``; 409 if it exists; the new
                                                            repository gets an initial commit with
                                                            ``.gitattributes``, as on the Hub
``POST /api/validate-yaml``                                 README metadata check made before a commit that
                                                            adds ``README.md`` (YAML parsed; errors -> 400)
``GET  /api/models/{repo}[/revision/{rev}]``                ``model_info`` / ``repo_info`` (``sha``,
                                                            ``private``, ``siblings``)
``GET  /api/models/{repo}/tree/{rev}[/{path}]``             ``list_repo_tree`` (``recursive``; one page)
``POST /api/models/{repo}/preupload/{rev}``                 upload modes: ``lfs`` for the Hub's default LFS
                                                            patterns (``*.safetensors``, ``*.bin``, ...), binary
                                                            samples and files of 10 MiB or more, else
                                                            ``regular``
``POST /{repo}.git/info/lfs/objects/batch``                 LFS batch API (``basic`` transfer): one upload
                                                            URL per object not stored yet
``PUT  /lfs-upload/{oid}?ticket=...``                       the pre-signed upload URL the batch answer hands
                                                            out (no token, like S3); sha256 and size checked
``POST /api/models/{repo}/commit/{rev}``                    NDJSON commit: ``header``, ``file`` (base64),
                                                            ``lfsFile`` (must be uploaded), ``deletedFile``,
                                                            ``deletedFolder``; applied all at once or not at all
``HEAD|GET /{repo}/resolve/{rev}/{path}``                   file download with ``ETag`` (git blob id, or the
                                                            sha256 for LFS files), ``X-Repo-Commit``,
                                                            ``Content-Length``, and ``X-Linked-Etag`` /
                                                            ``X-Linked-Size`` for LFS files; ``Range`` honoured
==========================================================  ===================================================

Errors carry the ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and
``X-Error-Message`` headers the client turns into its specific exceptions. Authentication: a request whose
``Authorization: Bearer`` token is not ``valid_token`` gets 401 "Invalid credentials in Authorization
header"; writes need the valid token; a private repository is invisible (404) without it.

Not implemented, on purpose: Xet storage (run the client with ``HF_HUB_DISABLE_XET=1`` so it uses the LFS
batch API), pull requests, branches and tags, multipart LFS uploads, pagination, gated repositories.
Requests to anything else get 404 and are recorded in ``HubTestServer.unhandled`` so a test can assert that
the client asked for nothing the double does not know.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# The Hub's default .gitattributes of a new model repository (the LFS part), and its size threshold.
LFS_PATTERNS = ("*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
                "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
                "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "*.tar.*", "*.tar", "*.tflite",
                "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*")
LFS_MIN_BYTES = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"


def git_blob_id(content: bytes) -> str:
    """The id git gives a blob: sha1 over ``blob <size>\\0`` + the bytes (the Hub's ETag of a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file stored in git in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit: its bytes, and whether git holds it through LFS."""

    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def blob_id(self) -> str:
        """What git stores: the bytes themselves, or the LFS pointer."""
        return git_blob_id(lfs_pointer(self.sha256, len(self.content)) if self.lfs else self.content)


@dataclass
class Commit:
    oid: str
    summary: str
    files: dict[str, StoredFile]
    date: str


@dataclass
class StoredRepo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)  # oldest first; the last one is ``main``

    def resolve(self, revision: str) -> Commit | None:
        if revision == "main":
            return self.commits[-1]
        return next((c for c in self.commits if c.oid == revision), None)


class _HubError(Exception):
    """An HTTP error answer: status, the client's ``X-Error-Code`` and a message."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubTestServer:
    """The test double, run in a daemon thread: ``with HubTestServer(valid_token="hf_x") as hub:`` then
    ``HF_ENDPOINT=hub.endpoint``.

    ``user`` is the name ``whoami`` reports; ``fail_commits_with`` makes every commit answer that HTTP
    status (to test a push that fails after the repository was created). ``requests`` records
    ``(method, path, status)`` of every request; ``unhandled`` those no route matched.
    """

    def __init__(self, valid_token: str, user: str = "tester") -> None:
        self.valid_token = valid_token
        self.user = user
        self.repos: dict[str, StoredRepo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> bytes, the LFS storage shared by all repositories
        self._upload_tickets: dict[str, str] = {}  # sha256 -> ticket of its pre-signed upload URL
        self.fail_commits_with: int | None = None
        self.requests: list[tuple[str, str, int]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the hub test server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubTestServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests inspect ------------------------------------------------------------------------------

    def commits(self, repo_id: str) -> list[Commit]:
        """Every commit of a repository, oldest first (the first is the Hub's initial commit)."""
        return list(self.repos[repo_id].commits)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        commit = self.repos[repo_id].resolve(revision)
        if commit is None:
            raise KeyError(revision)
        return {path: stored.content for path, stored in commit.files.items()}

    # --- the API -----------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request -> (status, headers, body). Raises ``_HubError`` for error answers."""
        authorised = self._authorise(headers)
        routes: list[tuple[str, str, Any]] = [
            ("GET", r"/api/whoami-v2", self._whoami),
            ("GET", r"/api/agent-harnesses", lambda **_: _json({"standardEnvVars": [], "harnesses": {}})),
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("GET", rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<path>.+))?", self._tree),
            ("GET", rf"/api/models/{_REPO}(?:/revision/{_REV})?", self._model_info),
            ("POST", rf"/api/models/{_REPO}/preupload/{_REV}", self._preupload),
            ("POST", rf"/api/models/{_REPO}/commit/{_REV}", self._commit),
            ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", self._lfs_batch),
            ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", self._lfs_upload),
            ("GET", rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)", self._resolve),
            ("HEAD", rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)", self._resolve),
        ]
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                return handler(authorised=authorised, query=query, headers=headers, body=body, **params)
        with self._lock:
            self.unhandled.append((method, path))
        raise _HubError(404, f"hub test double: no route for {method} {path}")

    def _authorise(self, headers: Any) -> bool:
        """True with the valid token, False without a token; a wrong token is a 401 on any request."""
        value = headers.get("Authorization")
        if not value:
            return False
        if value != f"Bearer {self.valid_token}":
            raise _HubError(401, "Invalid credentials in Authorization header")
        return True

    def _repo(self, repo_id: str, authorised: bool) -> StoredRepo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not authorised):
            raise _HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: StoredRepo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    @staticmethod
    def _write_access(authorised: bool) -> None:
        if not authorised:
            raise _HubError(401, "You must be authenticated to write to the Hub")

    def _whoami(self, *, authorised: bool, **_: Any) -> tuple[int, dict[str, str], bytes]:
        if not authorised:
            raise _HubError(401, "Invalid credentials in Authorization header")
        return _json({"type": "user", "name": self.user, "fullname": self.user, "orgs": [],
                      "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def _create_repo(self, *, authorised: bool, body: bytes, **_: Any) -> tuple[int, dict[str, str], bytes]:
        self._write_access(authorised)
        payload = json.loads(body)
        if payload.get("type", "model") != "model":
            raise _HubError(400, "the hub test double only hosts model repositories")
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        private = payload.get("visibility", "public") == "private" or bool(payload.get("private"))
        with self._lock:
            if repo_id in self.repos:
                raise _HubError(409, "You already created this model repo",
                                headers={"X-Error-Message": "You already created this model repo"})
            repo = StoredRepo(repo_id, private)
            files = {".gitattributes": StoredFile(GITATTRIBUTES, lfs=False)}
            repo.commits.append(Commit(_commit_oid(None, files, "initial commit"), "initial commit", files, _now()))
            self.repos[repo_id] = repo
        return _json({"url": f"{self.endpoint}/{repo_id}", "name": repo_id, "id": repo_id})

    def _validate_yaml(self, *, body: bytes, **_: Any) -> tuple[int, dict[str, str], bytes]:
        content = json.loads(body).get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.DOTALL)
        if match:
            try:
                metadata = yaml.safe_load(match.group(1))
            except yaml.YAMLError as exc:
                return _json({"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []}, status=400)
            if not isinstance(metadata, dict):
                return _json({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, status=400)
        return _json({"errors": [], "warnings": []})

    def _model_info(self, *, authorised: bool, repo: str, rev: str = "main",
                    **_: Any) -> tuple[int, dict[str, str], bytes]:
        stored = self._repo(repo, authorised)
        commit = self._commit_at(stored, rev)
        return _json({"id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": commit.oid,
                      "private": stored.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                      "tags": [], "lastModified": commit.date, "createdAt": stored.commits[0].date,
                      "siblings": [{"rfilename": p} for p in sorted(commit.files)]})

    def _tree(self, *, authorised: bool, query: dict[str, list[str]], repo: str, rev: str, path: str = "",
              **_: Any) -> tuple[int, dict[str, str], bytes]:
        commit = self._commit_at(self._repo(repo, authorised), rev)
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for file_path, stored in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix):].split("/")
            # every folder on the way down (only the first level unless recursive)
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, {"type": "directory", "path": folder,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                entry: dict[str, Any] = {"type": "file", "path": file_path, "oid": stored.blob_id,
                                         "size": len(stored.content)}
                if stored.lfs:
                    entry["lfs"] = {"oid": stored.sha256, "size": len(stored.content),
                                    "pointerSize": len(lfs_pointer(stored.sha256, len(stored.content)))}
                entries[file_path] = entry
        if prefix and not entries:
            raise _HubError(404, f"{path} does not exist on {rev}", "EntryNotFound",
                            headers={"X-Repo-Commit": commit.oid})
        return _json(list(entries.values()))

    def _preupload(self, *, authorised: bool, repo: str, rev: str, body: bytes,
                   **_: Any) -> tuple[int, dict[str, str], bytes]:
        self._write_access(authorised)
        commit = self._commit_at(self._repo(repo, authorised), rev)
        answers = []
        for item in json.loads(body)["files"]:
            sample = base64.b64decode(item.get("sample", ""))
            lfs = (any(fnmatch.fnmatch(item["path"].rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)
                   or b"\0" in sample or item["size"] >= LFS_MIN_BYTES)
            existing = commit.files.get(item["path"])
            answers.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": existing.blob_id if existing is not None else None})
        return _json({"files": answers, "commitOid": commit.oid})

    def _lfs_batch(self, *, authorised: bool, repo: str, body: bytes, **_: Any) -> tuple[int, dict[str, str], bytes]:
        self._write_access(authorised)
        self._repo(repo, authorised)
        payload = json.loads(body)
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise _HubError(400, "the hub test double only accepts LFS uploads with the basic transfer")
        objects = []
        for obj in payload["objects"]:
            answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs_objects:
                ticket = secrets.token_hex(8)
                with self._lock:
                    self._upload_tickets[obj["oid"]] = ticket
                answer["actions"] = {"upload": {"href": f"{self.endpoint}/lfs-upload/{obj['oid']}?ticket={ticket}",
                                                "header": {}}}
            objects.append(answer)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, json.dumps(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()

    def _lfs_upload(self, *, query: dict[str, list[str]], oid: str, body: bytes,
                    **_: Any) -> tuple[int, dict[str, str], bytes]:
        if self._upload_tickets.get(oid) != query.get("ticket", [""])[0]:
            raise _HubError(403, "upload URL not issued by the LFS batch endpoint")
        if hashlib.sha256(body).hexdigest() != oid:
            raise _HubError(400, f"uploaded bytes do not hash to {oid}")
        with self._lock:
            self.lfs_objects[oid] = body
            self._upload_tickets.pop(oid, None)
        return 200, {"ETag": f'"{oid}"'}, b""

    def _commit(self, *, authorised: bool, repo: str, rev: str, body: bytes,
                **_: Any) -> tuple[int, dict[str, str], bytes]:
        self._write_access(authorised)
        stored = self._repo(repo, authorised)
        if self.fail_commits_with is not None:
            raise _HubError(self.fail_commits_with, "commit refused by the hub test double (fail_commits_with)")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "a commit starts with its header line")
        header = lines[0]["value"]
        with self._lock:
            head = self._commit_at(stored, rev)
            if header.get("parentCommit") not in (None, head.oid):
                raise _HubError(412, f"parent commit {header['parentCommit']} is not the head of {rev}")
            files = dict(head.files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    content = self.lfs_objects.get(value["oid"])
                    if content is None or ("size" in value and value["size"] != len(content)):
                        raise _HubError(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                    files[value["path"]] = StoredFile(content, lfs=True)
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise _HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(folder)}
                else:
                    raise _HubError(400, f"the hub test double does not know commit operation {key!r}")
            commit = Commit(_commit_oid(head.oid, files, header.get("summary", "")), header.get("summary", ""),
                            files, _now())
            stored.commits.append(commit)
        return _json({"success": True, "commitOid": commit.oid, "pullRequestUrl": None,
                      "commitUrl": f"{self.endpoint}/{repo}/commit/{commit.oid}"})

    def _resolve(self, *, authorised: bool, headers: Any, repo: str, rev: str, path: str,
                 **_: Any) -> tuple[int, dict[str, str], bytes]:
        commit = self._commit_at(self._repo(repo, authorised), rev)
        stored = commit.files.get(path)
        if stored is None:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        content = stored.content
        out = {"X-Repo-Commit": commit.oid, "ETag": f'"{stored.sha256 if stored.lfs else stored.blob_id}"',
               "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if stored.lfs:
            out.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(len(content))})
        status = 200
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("Range", "") or "")
        if ranged and int(ranged.group(1)) < len(content):
            start = int(ranged.group(1))
            end = int(ranged.group(2)) if ranged.group(2) else len(content) - 1
            out["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start:end + 1], 206
        return status, out, content


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 plumbing: reads the body (Content-Length or chunked), calls ``HubTestServer.handle``."""

    protocol_version = "HTTP/1.1"
    server_hub: HubTestServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- BaseHTTPRequestHandler's name
        """Silence the default stderr log; requests are recorded in ``HubTestServer.requests``."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        try:
            status, headers, payload = self.server_hub.handle(self.command, unquote(url.path),
                                                              parse_qs(url.query), self.headers, body)
        except _HubError as error:
            status, payload = error.status, json.dumps({"error": error.message}).encode()
            headers = {"Content-Type": "application/json", "X-Error-Message": error.message, **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
        self.server_hub.requests.append((self.command, url.path, status))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _serve


def _json(data: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _commit_oid(parent: str | None, files: dict[str, StoredFile], summary: str) -> str:
    """A 40-hex commit id over the parent, the tree and the message (unique per commit, like git's)."""
    digest = hashlib.sha1(f"{parent}\n{summary}\n{secrets.token_hex(4)}".encode())
    for path in sorted(files):
        digest.update(f"{path}\0{files[path].blob_id}\n".encode())
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
