"""The repos a local Hub serves: folders, content-derived commit shas, file entries (LFS for
large files) and the access rules of private and gated repos."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

CHUNK = 1 << 20


@dataclass
class HubStats:
    requests: int = 0
    bytes_sent: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class LocalHub:
    """The repository store behind the local Hub app (a folder, plus access rules)."""

    def __init__(
        self, root: Path, private: dict[str, str] | None = None, gated: dict[str, str] | None = None
    ) -> None:
        self.root = Path(root)
        self.private = dict(private or {})
        self.gated = dict(gated or {})
        self.stats = HubStats()
        self._lock = threading.Lock()
        self._hash_cache: dict[tuple[str, int, int], str] = {}

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        base = self.root / "datasets" if repo_type == "dataset" else self.root
        return base / repo_id

    def files(self, repo_dir: Path) -> list[Path]:
        return sorted(
            p
            for p in repo_dir.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(repo_dir).parts)
        )

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._hash_cache.get(key)
        if cached:
            return cached
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        with self._lock:
            self._hash_cache[key] = digest.hexdigest()
        return digest.hexdigest()

    def commit_sha(self, repo_dir: Path) -> str:
        digest = hashlib.sha1(usedforsecurity=False)
        for path in self.files(repo_dir):
            digest.update(
                f"{path.relative_to(repo_dir).as_posix()}\0{self.sha256(path)}\n".encode()
            )
        return digest.hexdigest()

    def entry(self, repo_dir: Path, path: Path) -> dict[str, Any]:
        rel = path.relative_to(repo_dir).as_posix()
        if path.is_dir():
            return {
                "type": "directory",
                "path": rel,
                "oid": hashlib.sha1(rel.encode(), usedforsecurity=False).hexdigest(),
            }
        size = path.stat().st_size
        sha = self.sha256(path)
        item: dict[str, Any] = {
            "type": "file",
            "path": rel,
            "size": size,
            "oid": hashlib.sha1(sha.encode(), usedforsecurity=False).hexdigest(),
        }
        if path.suffix in (".safetensors", ".bin", ".zip", ".gz"):
            item["lfs"] = {"size": size, "oid": sha, "pointerSize": 134}
        return item

    def access_error(self, repo_id: str, request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if repo_id in self.private and token != self.private[repo_id]:
            return JSONResponse(
                {"error": "Repository not found"},
                status_code=401,
                headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
            )
        if repo_id in self.gated and token != self.gated[repo_id]:
            return JSONResponse(
                {
                    "error": f"Access to model {repo_id} is restricted. You must have access to it "
                    "and be authenticated to access it. Please log in."
                },
                status_code=403 if token else 401,
                headers={
                    "X-Error-Code": "GatedRepo",
                    "X-Error-Message": "Access to this repo is restricted.",
                },
            )
        return None
