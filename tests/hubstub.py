"""A stand-in for the Hugging Face Hub on loopback, for download tests.

It answers the routes ``huggingface_hub`` uses the way the real hub does:

* ``GET /api/models/OWNER/NAME/tree/REV?recursive=...`` - the file list, with
  ``lfs.oid`` (sha256) for large files;
* ``HEAD``/``GET /OWNER/NAME/resolve/REV/PATH`` - ``X-Repo-Commit``, ``ETag`` /
  ``X-Linked-Etag`` / ``X-Linked-Size`` headers, and the bytes with HTTP Range;
* 404 with ``X-Error-Code: RepoNotFound`` / ``EntryNotFound`` /
  ``RevisionNotFound``, and 401 ``GatedRepo`` for a gated repo without the token.

Faults for the tests: ``drop_after`` (close the connection after N body bytes,
once per file), ``corrupt`` (serve bytes that do not match the listed sha256),
``delay`` (seconds per 64 KB chunk, so a download can be watched and cancelled).
Every request is recorded in ``requests`` (method, path, Range, Authorization).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_THRESHOLD = 100_000


@dataclass
class StubFile:
    data_path: Path | None = None
    data: bytes | None = None
    _sha256: str | None = None

    def size(self) -> int:
        return self.data_path.stat().st_size if self.data_path else len(self.data or b"")

    def sha256(self) -> str:
        if self._sha256 is None:
            h = hashlib.sha256()
            if self.data_path:
                with open(self.data_path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            else:
                h.update(self.data or b"")
            self._sha256 = h.hexdigest()
        return self._sha256

    def read(self, start: int, end: int) -> bytes:
        if self.data_path:
            with open(self.data_path, "rb") as f:
                f.seek(start)
                return f.read(end - start)
        return (self.data or b"")[start:end]


@dataclass
class StubRepo:
    files: dict[str, StubFile]
    gated_token: str | None = None  # set: requests need "Authorization: Bearer <token>"
    revisions: tuple[str, ...] = ("main",)


@dataclass
class HubStub:
    repos: dict[str, StubRepo] = field(default_factory=dict)
    drop_after: int | None = None
    corrupt: set[str] = field(default_factory=set)
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    _dropped: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_repo(self, repo_id: str, files: dict[str, Path | bytes], gated_token: str | None = None) -> None:
        self.repos[repo_id] = StubRepo(
            {p: StubFile(data_path=v) if isinstance(v, Path) else StubFile(data=v) for p, v in files.items()},
            gated_token,
        )

    def start(self) -> HubStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                stub._handle(self, head=True)

            def do_GET(self) -> None:
                stub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # ----- routing ----------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        parsed = urlparse(h.path)
        path = unquote(parsed.path)
        self.requests.append(
            {"method": h.command, "path": path, "range": h.headers.get("Range"), "auth": h.headers.get("Authorization")}
        )
        parts = [p for p in path.split("/") if p]
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
                repo = self._repo(h, f"{parts[2]}/{parts[3]}", parts[5])
                if repo is not None:
                    self._tree(h, repo)
            elif len(parts) >= 5 and parts[2] == "resolve":
                repo = self._repo(h, f"{parts[0]}/{parts[1]}", parts[3])
                if repo is not None:
                    self._resolve(h, repo, "/".join(parts[4:]), head)
            else:
                self._error(h, 404, "RepoNotFound", "not found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _repo(self, h: BaseHTTPRequestHandler, repo_id: str, revision: str) -> StubRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(h, 404, "RepoNotFound", "Repository not found")
            return None
        if repo.gated_token and h.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            self._error(h, 401, "GatedRepo", "Access to this model is restricted")
            return None
        if revision not in repo.revisions and revision != COMMIT:
            self._error(h, 404, "RevisionNotFound", "Invalid rev id")
            return None
        return repo

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _tree(self, h: BaseHTTPRequestHandler, repo: StubRepo) -> None:
        entries = []
        for path, f in sorted(repo.files.items()):
            entry: dict[str, Any] = {
                "type": "file",
                "oid": hashlib.sha1(path.encode()).hexdigest(),
                "size": f.size(),
                "path": path,
            }
            if f.size() >= LFS_THRESHOLD:
                entry["lfs"] = {"oid": f.sha256(), "size": f.size(), "pointerSize": 134}
            entries.append(entry)
        body = json.dumps(entries).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _resolve(self, h: BaseHTTPRequestHandler, repo: StubRepo, path: str, head: bool) -> None:
        f = repo.files.get(path)
        if f is None:
            self._error(h, 404, "EntryNotFound", "Entry not found")
            return
        size = f.size()
        lfs = size >= LFS_THRESHOLD
        etag = f.sha256() if lfs else hashlib.sha1(path.encode()).hexdigest()
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-", 1)[0] or 0)
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("ETag", f'"{etag}"')
        if lfs:
            h.send_header("X-Linked-Etag", f'"{etag}"')
            h.send_header("X-Linked-Size", str(size))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(size - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.end_headers()
        if head:
            return
        import time

        pos, sent = start, 0
        drop = self.drop_after if (self.drop_after and path not in self._dropped) else None
        while pos < size:
            block = f.read(pos, min(pos + 65536, size))
            if path in self.corrupt:
                block = bytes(b ^ 0x55 for b in block)
            if drop is not None and sent + len(block) > drop:
                h.wfile.write(block[: drop - sent])
                h.wfile.flush()
                self._dropped.add(path)
                h.close_connection = True
                h.connection.shutdown(2)
                return
            h.wfile.write(block)
            pos += len(block)
            sent += len(block)
            if self.delay:
                time.sleep(self.delay)


def tiny_transformers_folder(dest: Path, gguf_path: Path) -> Path:
    """A small but real transformers model folder (random weights, SmolLM2's tokenizer): about 3 MB."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (dest / "config.json").is_file():
        return dest
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest
