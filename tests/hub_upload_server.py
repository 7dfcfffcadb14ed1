"""A writable Hugging Face Hub for tests: just enough of the Hub's API for ``HfApi.create_repo``,
``create_branch`` and ``upload_folder`` / ``create_commit`` with regular (non-LFS, non-xet)
files, written into plain git repositories that olah then serves for downloads.

olah (the local Hub of the core tests) is a read-only mirror of git repositories laid out as
``<mirrors>/<models|datasets|spaces>/<org>/<name>``. This server writes into the same layout,
so a repository pushed here is downloadable from olah at once: olah opens the git repository on
every request, so new repositories and new commits need no restart.

What it implements, as huggingface_hub 2.x calls it (``hf_api.py``, ``_commit_api.py``,
``_upload_pipeline.py``):

- ``POST /api/repos/create`` -- a bare git repository whose first commit holds ``.gitattributes``
  (as on the Hub); 409 when it exists;
- ``POST /api/validate-yaml`` -- the README front matter must be a YAML mapping;
- ``POST /api/{type}s/{repo}/preupload/{rev}`` -- ``uploadMode: "regular"`` for every file, and the
  git blob sha of the file already at ``rev`` (how the client skips unchanged files);
- ``POST /api/{type}s/{repo}/commit/{rev}`` -- the NDJSON commit (header, base64 ``file``,
  ``deletedFile``, ``deletedFolder``) becomes one git commit on branch ``rev`` (``git fast-import``);
- ``POST /api/{type}s/{repo}/branch/{branch}`` and ``GET /api/{type}s/{repo}[/revision/{rev}]``.

Writes need ``Authorization: Bearer <token>`` (401 otherwise). Anything else (LFS, pull requests,
copies) is refused with a clear message rather than half-done. Binds 127.0.0.1 only.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TYPES = {"model": "models", "dataset": "datasets", "space": "spaces"}
_NAME = r"[A-Za-z0-9][\w.-]*"
_REPO_ROUTE = re.compile(rf"^/api/(models|datasets|spaces)/({_NAME})/({_NAME})"
                         r"(?:/(preupload|commit|branch|revision)/(.+))?$")
_BRANCH_RE = re.compile(r"^[\w][\w.\-/]*$")
#: The Hub starts every repository with this file (here without LFS rules: uploads are regular).
GITATTRIBUTES = "# created by genzoo's test Hub; files are stored as regular git blobs\n"


class HubError(Exception):
    """An HTTP error answer: status, message and the Hub's ``X-Error-Code`` (if any)."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


def _git(repo: Path | None, *args: str, input: bytes | None = None) -> str:
    """Run git with no user or system configuration (the tests' machine may have any)."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    cmd = ["git"] + (["--git-dir", str(repo)] if repo is not None else []) + list(args)
    out = subprocess.run(cmd, input=input, env=env, capture_output=True, check=False)
    if out.returncode != 0:
        raise HubError(500, f"git {args[0]} failed: {out.stderr.decode(errors='replace').strip()}")
    return out.stdout.decode().strip()


def _check_path(path: object) -> str:
    """A file path inside the repository: relative, no '..', nothing under .git."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or \
            any(ord(c) < 32 for c in path):
        raise HubError(400, f"invalid path {path!r}")
    parts = path.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"invalid path {path!r}")
    return "/".join(parts)


class UploadHub:
    """The server: ``with UploadHub(mirrors) as hub: HfApi(endpoint=hub.endpoint, token=hub.token)``.

    ``log`` lists ``(method, path)`` of every request; ``repos`` maps a repo id to what
    create_repo was told (``private``)."""

    def __init__(self, mirrors: str | os.PathLike, token: str = "hf_genzoo_test_write_token"):
        self.mirrors = Path(mirrors)
        self.token = token
        self.log: list[tuple[str, str]] = []
        self.repos: dict[str, dict] = {}
        self._lock = threading.Lock()  # one write at a time: commits compare-and-swap the branch
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "UploadHub":
        """Listen on a free port of 127.0.0.1, in a daemon thread."""
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="genzoo-test-hub")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "UploadHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- repositories -------------------------------------------------------------------
    def repo_path(self, repo_id: str, repo_type: str = "model") -> Path:
        """Where the git repository of ``repo_id`` lives (the layout olah reads)."""
        return self.mirrors / TYPES[repo_type] / repo_id

    def _existing(self, kind: str, org: str, name: str) -> Path:
        """The git directory of a repository: bare (ours) or with a work tree (conftest's)."""
        path = self.mirrors / kind / org / name
        for git_dir in (path, path / ".git"):
            if (git_dir / "HEAD").is_file():
                return git_dir
        raise HubError(404, f"Repository {org}/{name} not found", "RepoNotFound")

    def _head(self, repo: Path, rev: str) -> str:
        """The commit of branch, tag or sha ``rev`` (404 RevisionNotFound when unknown)."""
        if rev.startswith("-"):
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        try:
            return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        except HubError:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound") from None

    def _branch_head(self, repo: Path, branch: str) -> str:
        """Commits go to branches only, as on the Hub."""
        if not _BRANCH_RE.match(branch):
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        return self._head(repo, f"refs/heads/{branch}")

    def _blobs(self, repo: Path, commit: str) -> dict[str, str]:
        """``{path: git blob sha}`` of every file in ``commit``."""
        out = _git(repo, "ls-tree", "-r", "-z", commit)
        blobs = {}
        for entry in filter(None, out.split("\0")):
            meta, path = entry.split("\t", 1)
            blobs[path] = meta.split()[2]
        return blobs

    def create_repo(self, body: dict) -> tuple[int, dict]:
        """``POST /api/repos/create``: a bare repository with an initial commit on main."""
        kind = TYPES.get(body.get("type") or "model")
        org, name = body.get("organization"), body.get("name")
        if kind is None or not org or not re.fullmatch(_NAME, str(org)) or \
                not re.fullmatch(_NAME, str(name or "")):
            raise HubError(400, "expected organization, name and type model|dataset|space")
        path = self.mirrors / kind / org / name
        url = f"{self.endpoint}/{'' if kind == 'models' else kind + '/'}{org}/{name}"
        if path.exists():
            raise HubError(409, "You already created this repo", url=url)  # create_repo reads url
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.creating")
        shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted create
        _git(None, "init", "-q", "--bare", "-b", "main", str(tmp))
        self._fast_import(tmp, "main", None, "initial commit", "",
                          [("M", ".gitattributes", GITATTRIBUTES.encode())])
        tmp.rename(path)  # olah sees the repository only once it has its first commit
        private = body.get("visibility") == "private" or bool(body.get("private"))
        self.repos[f"{org}/{name}"] = {"private": private, "type": kind[:-1]}
        return 200, {"url": url, "name": f"{org}/{name}", "id": f"{org}/{name}"}

    def preupload(self, repo: Path, rev: str, body: dict, query: dict) -> dict:
        """Every file is uploaded as a regular git blob; ``oid`` is what is there now."""
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the test Hub")
        files = body.get("files")
        if not isinstance(files, list):
            raise HubError(400, "expected {'files': [...]}")
        blobs = self._blobs(repo, self._branch_head(repo, rev))
        answer = []
        for f in files:
            path = _check_path(f.get("path") if isinstance(f, dict) else None)
            answer.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                           "oid": blobs.get(path)})
        return {"files": answer}

    def commit(self, repo: Path, repo_id: str, kind: str, rev: str, data: bytes,
               query: dict) -> dict:
        """The NDJSON commit of ``create_commit`` -> one git commit on branch ``rev``."""
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the test Hub")
        try:
            lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        except ValueError as e:
            raise HubError(400, f"commit payload is not NDJSON: {e}") from None
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the commit header")
        header = lines[0].get("value") or {}
        parent = self._branch_head(repo, rev)
        if header.get("parentCommit") not in (None, parent):
            raise HubError(412, f"parent commit {header['parentCommit']} is not the head of {rev}")
        ops = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "file content must be base64-encoded")
                ops.append(("M", _check_path(value.get("path")),
                            base64.b64decode(value.get("content", ""), validate=True)))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append(("D", _check_path(value.get("path")), b""))
            else:  # lfsFile, deletedEntry, copies: never asked for (preupload says "regular")
                raise HubError(422, f"the test Hub accepts regular file uploads only, not {key!r}")
        sha = self._fast_import(repo, rev, parent, header.get("summary") or "commit",
                                header.get("description") or "", ops)
        prefix = "" if kind == "models" else kind + "/"
        return {"success": True, "commitOid": sha, "pullRequestUrl": None,
                "commitUrl": f"{self.endpoint}/{prefix}{repo_id}/commit/{sha}"}

    def create_branch(self, repo: Path, branch: str, body: dict) -> dict:
        """``POST .../branch/{branch}`` from ``startingPoint`` (default: main)."""
        if not _BRANCH_RE.match(branch) or ".." in branch:
            raise HubError(400, f"invalid branch name {branch!r}")
        if _git(repo, "for-each-ref", f"refs/heads/{branch}"):
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        start = self._head(repo, body.get("startingPoint") or "refs/heads/main")
        _git(repo, "update-ref", f"refs/heads/{branch}", start, "0" * 40)
        return {}

    def info(self, repo: Path, repo_id: str, rev: str) -> dict:
        """``GET /api/models/{repo}[/revision/{rev}]``: the fields ``repo_info`` reads."""
        sha = self._head(repo, rev)
        return {"id": repo_id, "modelId": repo_id, "sha": sha,
                "private": self.repos.get(repo_id, {}).get("private", False),
                "siblings": [{"rfilename": p} for p in sorted(self._blobs(repo, sha))]}

    def _fast_import(self, repo: Path, branch: str, parent: str | None, summary: str,
                     description: str, ops: list[tuple[str, str, bytes]]) -> str:
        """Write one commit with ``git fast-import`` (no working tree, no index, one process);
        fast-import refuses to move the branch unless the commit descends from its head."""
        message = (summary + ("\n\n" + description if description else "")).encode()
        out = [f"commit refs/heads/{branch}".encode(),
               f"committer genzoo test hub <hub@127.0.0.1> {int(time.time())} +0000".encode(),
               b"data %d" % len(message), message]
        if parent:
            out.append(f"from {parent}".encode())
        for op, path, content in ops:
            quoted = ('"' + path.replace('"', '\\"') + '"').encode()  # C-style quoting
            if op == "D":
                out.append(b"D " + quoted)
            else:
                out += [b"M 100644 inline " + quoted, b"data %d" % len(content), content]
        _git(repo, "fast-import", "--quiet", "--done",
             input=b"\n".join(out) + b"\n\ndone\n")
        return _git(repo, "rev-parse", f"refs/heads/{branch}")


class _Handler(BaseHTTPRequestHandler):
    """Routes a request to the UploadHub; answers JSON with a Content-Length (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_hub: UploadHub

    def log_message(self, *args) -> None:  # quiet: the hub keeps its own log
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        hub = self.server_hub
        url = urlsplit(self.path)
        hub.log.append((method, url.path))
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        try:
            status, answer = self._route(method, url.path, parse_qs(url.query), data)
        except HubError as e:
            self._send(e.status, {"error": e.message, **e.extra}, e.code, e.message)
        except Exception as e:  # noqa: BLE001 - a server bug must answer, never hang the client
            self._send(500, {"error": f"{type(e).__name__}: {e}"})
        else:
            self._send(status, answer)

    def _authorized(self) -> None:
        auth = self.headers.get("Authorization") or ""
        if not auth:
            raise HubError(401, "Unauthorized: a write token is required")
        if auth != f"Bearer {self.server_hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def _route(self, method: str, path: str, query: dict, data: bytes) -> tuple[int, dict]:
        hub = self.server_hub
        body = {}
        if data and "ndjson" not in (self.headers.get("Content-Type") or ""):
            try:
                body = json.loads(data)
            except ValueError:
                raise HubError(400, "the request body is not JSON") from None
            if not isinstance(body, dict):
                raise HubError(400, "the request body must be a JSON object")
        if method == "POST" and path == "/api/repos/create":
            self._authorized()
            with hub._lock:
                return hub.create_repo(body)
        if method == "POST" and path == "/api/validate-yaml":
            return _validate_yaml(body.get("content") or "")
        m = _REPO_ROUTE.match(path)
        if m is None:
            raise HubError(501, f"the test Hub does not implement {method} {path}")
        kind, org, name, action, rev = m.groups()
        rev = unquote(rev) if rev else "main"
        repo_id = f"{org}/{name}"
        if method == "GET" and action in (None, "revision"):
            return 200, hub.info(hub._existing(kind, org, name), repo_id, rev)
        if method != "POST" or action in (None, "revision"):
            raise HubError(501, f"the test Hub does not implement {method} {path}")
        self._authorized()
        with hub._lock:
            repo = hub._existing(kind, org, name)
            if action == "preupload":
                return 200, hub.preupload(repo, rev, body, query)
            if action == "commit":
                return 200, hub.commit(repo, repo_id, kind, rev, data, query)
            return 200, hub.create_branch(repo, rev, body)

    def _send(self, status: int, answer: dict, code: str | None = None,
              message: str | None = None) -> None:
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if code:
            self.send_header("X-Error-Code", code)
        if message:
            self.send_header("X-Error-Message", message)
        self.end_headers()
        self.wfile.write(payload)


def _validate_yaml(content: str) -> tuple[int, dict]:
    """The README's front matter, if any, must be a YAML mapping (what the Hub insists on)."""
    import yaml
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.S)
    error = None
    if match:
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError as e:
            error = f"invalid YAML: {str(e).splitlines()[0]}"
        else:
            if meta is not None and not isinstance(meta, dict):
                error = "the front matter must be a YAML mapping"
    if error:
        return 400, {"errors": [{"message": error}], "warnings": []}
    return 200, {"errors": [], "warnings": []}
