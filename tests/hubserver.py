"""A small Hugging Face Hub look-alike on 127.0.0.1, for driving the real huggingface_hub client.

It serves the endpoints that model_info, hf_hub_download, snapshot_download,
get_safetensors_metadata and whoami use, with the headers the Hub sends
(X-Repo-Commit, ETag / X-Linked-Etag / X-Linked-Size, X-Error-Code,
X-Error-Message), Range requests for resuming, and per-repo access rules
(public, gated, private). It can drop a connection halfway through a file
and can slow a file down, so that interrupted and cancelled downloads can be
tested.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    model_id: str
    files: dict[str, bytes]
    access: str = "public"  # "public" | "gated" | "private"
    commit: str = ""
    approved_tokens: set[str] = field(default_factory=set)  # for gated / private repos
    earlier: dict[str, dict[str, bytes]] = field(default_factory=dict)  # files of earlier commits, still served

    def __post_init__(self) -> None:
        if not self.commit:
            self.commit = hashlib.sha1(self.model_id.encode()).hexdigest()

    def publish(self, files: dict[str, bytes], commit: str) -> None:
        """A new commit on main; the earlier ones stay reachable by their hash, as on the Hub."""
        self.earlier[self.commit] = self.files
        self.files, self.commit = files, commit

    def at(self, revision: str) -> Repo:
        """The repository as `revision` (main, or a commit) has it."""
        if revision in ("main", self.commit) or revision not in self.earlier:
            return self
        return Repo(self.model_id, self.earlier[revision], self.access, revision, self.approved_tokens)

    @staticmethod
    def is_lfs(name: str) -> bool:
        return name.endswith((".safetensors", ".bin", ".pt", ".pth", ".model"))

    def etag(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha256(data).hexdigest() if self.is_lfs(name) else git_blob_id(data)

    def sibling(self, name: str, with_blobs: bool) -> dict:
        entry: dict = {"rfilename": name}
        if with_blobs:
            data = self.files[name]
            entry["size"] = len(data)
            entry["blobId"] = git_blob_id(data)
            if self.is_lfs(name):
                entry["lfs"] = {"size": len(data), "sha256": self.etag(name), "pointerSize": 134}
        return entry

    def tree_entry(self, name: str) -> dict:
        data = self.files[name]
        entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
        if self.is_lfs(name):
            entry["lfs"] = {"oid": self.etag(name), "size": len(data), "pointerSize": 134}
        return entry


def repo_from_folder(model_id: str, folder: Path, **kwargs) -> Repo:
    files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
    return Repo(model_id, files, **kwargs)


# The model id and the valid token that the tests' fake Hub serves (tests/conftest.py's fake_hub).
MODEL = "tiny-org/tiny-llama"
TOKEN = "hf_" + "A1b2C3d4" * 4 + "xy"


class FakeHub:
    """Start with `with FakeHub() as hub:`; `hub.url` is the HF_ENDPOINT to use."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.valid_tokens: set[str] = set()
        self.read_only_tokens: set[str] = set()  # valid, but refused (403) for gated and private repos
        self.drop_once: dict[str, int] = {}  # file name -> bytes to send before dropping the connection, once
        self.slow: dict[str, float] = {}  # file name -> seconds to sleep after each 16 KiB block
        self.ignore_range = False  # answer Range requests with the whole file, as some proxies do
        self.fail_status: int | None = None  # answer every request with this HTTP status (a Hub outage)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.bytes_sent: dict[str, int] = {}
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo: Repo) -> Repo:
        self.repos[repo.model_id] = repo
        return repo

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def ranges_for(self, filename: str) -> list[str | None]:
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + filename)]

    # --- request handling ---------------------------------------------------------------------

    def _send(self, h, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, str(v))
        if "Content-Length" not in (headers or {}):
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _json(self, h, obj, head: bool, headers: dict | None = None) -> None:
        body = json.dumps(obj).encode()
        self._send(h, 200, body, {"Content-Type": "application/json", **(headers or {})}, head)

    def _error(self, h, status: int, code: str | None, message: str, head: bool, commit: str | None = None) -> None:
        headers = {"X-Error-Message": message, "Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(h, status, json.dumps({"error": message}).encode(), headers, head)

    def _token(self, h) -> str | None:
        auth = h.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _check_access(self, h, repo: Repo | None, head: bool) -> bool:
        """Answer as the Hub does when the request may not see the repo; True when it may."""
        token = self._token(h)
        if token is not None and token not in self.valid_tokens:
            self._error(h, 401, None, INVALID_CREDENTIALS, head)
            return False
        if repo is None or (repo.access == "private" and token not in repo.approved_tokens):
            self._error(h, 404 if token else 401, "RepoNotFound", "Repository not found", head)
            return False
        if repo.access == "gated" and token not in repo.approved_tokens:
            if token is None:
                self._error(
                    h,
                    401,
                    "GatedRepo",
                    f"Access to model {repo.model_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in.",
                    head,
                )
            elif token in self.read_only_tokens:
                self._error(h, 403, None, "This token does not have the permission to access this repository", head)
            else:
                self._error(
                    h,
                    403,
                    "GatedRepo",
                    f"Access to model {repo.model_id} is restricted and you are not in the authorized list. "
                    f"Visit https://huggingface.co/{repo.model_id} to ask for access.",
                    head,
                )
            return False
        return True

    def _handle(self, h, head: bool) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        with self._lock:
            self.requests.append((h.command, path, h.headers.get("Range")))
        try:
            if self.fail_status is not None:
                return self._error(h, self.fail_status, None, "Internal Error", head)
            if path == "/api/whoami-v2":
                token = self._token(h)
                if token in self.valid_tokens:
                    return self._json(h, {"type": "user", "name": "researcher", "auth": {}}, head)
                return self._error(h, 401, None, INVALID_CREDENTIALS, head)
            m = re.fullmatch(r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?", path)
            if m:
                return self._model_info(h, m["repo"], m["rev"] or "main", query, head)
            m = re.fullmatch(r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?P<sub>/.*)?", path)
            if m:
                return self._tree(h, m["repo"], m["rev"], head)
            m = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
            if m:
                return self._resolve(h, m["repo"], m["rev"], m["file"], head)
            self._error(h, 404, None, "Not found", head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _revision_ok(self, h, repo: Repo, rev: str, head: bool) -> bool:
        if rev in ("main", repo.commit) or rev in repo.earlier:
            return True
        self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        return False

    def _model_info(self, h, model_id: str, rev: str, query: dict, head: bool) -> None:
        repo = self.repos.get(model_id)
        if not self._check_access(h, repo, head) or not self._revision_ok(h, repo, rev, head):
            return
        repo = repo.at(rev)
        with_blobs = query.get("blobs", ["false"])[0].lower() == "true"
        self._json(
            h,
            {
                "_id": "0" * 24,
                "id": model_id,
                "modelId": model_id,
                "sha": repo.commit,
                "private": repo.access == "private",
                "gated": "manual" if repo.access == "gated" else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "library_name": "transformers",
                "siblings": [repo.sibling(n, with_blobs) for n in sorted(repo.files)],
            },
            head,
        )

    def _tree(self, h, model_id: str, rev: str, head: bool) -> None:
        repo = self.repos.get(model_id)
        if not self._check_access(h, repo, head) or not self._revision_ok(h, repo, rev, head):
            return
        repo = repo.at(rev)
        self._json(h, [repo.tree_entry(n) for n in sorted(repo.files)], head)

    def _resolve(self, h, model_id: str, rev: str, filename: str, head: bool) -> None:
        repo = self.repos.get(model_id)
        if not self._check_access(h, repo, head) or not self._revision_ok(h, repo, rev, head):
            return
        repo = repo.at(rev)
        if filename not in repo.files:
            return self._error(h, 404, "EntryNotFound", f"{filename} does not exist on main", head, repo.commit)
        data = repo.files[filename]
        headers = {
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{git_blob_id(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if repo.is_lfs(filename):
            headers["X-Linked-Etag"] = f'"{repo.etag(filename)}"'
            headers["X-Linked-Size"] = str(len(data))
        start, end, status = 0, len(data) - 1, 200
        rng = h.headers.get("Range")
        if rng and not head and not self.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m[1])
                end = min(int(m[2]), len(data) - 1) if m[2] else len(data) - 1
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        body = data[start : end + 1]
        headers["Content-Length"] = str(len(body))
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if head:
            return
        with self._lock:
            drop_at = self.drop_once.pop(filename, None)
        delay = self.slow.get(filename, 0.0)
        sent = 0
        block = 16 * 1024
        while sent < len(body):
            if drop_at is not None and sent >= drop_at:
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(2)  # the client sees the body end early, as on a dropped network
                break
            chunk = body[sent : sent + block]
            if drop_at is not None:
                chunk = chunk[: max(0, drop_at - sent)] or chunk
            h.wfile.write(chunk)
            sent += len(chunk)
            with self._lock:
                self.bytes_sent[filename] = self.bytes_sent.get(filename, 0) + len(chunk)
            if delay:
                h.wfile.flush()
                time.sleep(delay)


def point_client_at(monkeypatch, url: str, home) -> None:
    """Point the huggingface_hub client at `url` with an empty HF_HOME, online.

    huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at
    import (conftest sets HF_HUB_OFFLINE=1 for the whole suite), so the values
    it uses are patched as well as the environment.
    """
    from huggingface_hub import constants

    home = str(home)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", home)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", home)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", home + "/hub")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", home + "/token")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
