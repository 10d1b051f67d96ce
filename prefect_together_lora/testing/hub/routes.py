"""The local Hub's HTTP API: repo info and listings, paths-info, trees, and file downloads
(ranged, with the headers ``huggingface_hub`` reads), each through one resolve-and-access
check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from prefect_together_lora.testing.hub.repos import CHUNK, LocalHub


def create_hub_app(hub: LocalHub) -> FastAPI:
    app = FastAPI(title="local hub", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        with hub._lock:
            hub.stats.requests += 1
            hub.stats.by_path[request.url.path] = hub.stats.by_path.get(request.url.path, 0) + 1
        return await call_next(request)

    def resolve(
        repo_type: str, repo_id: str, revision: str, request: Request
    ) -> tuple[Path, str] | Response:
        repo_dir = hub.repo_dir(repo_type, repo_id)
        if not repo_dir.is_dir():
            return JSONResponse(
                {"error": "Repository not found"},
                status_code=404,
                headers={"X-Error-Code": "RepoNotFound"},
            )
        denied = hub.access_error(repo_id, request)
        if denied is not None:
            return denied
        sha = hub.commit_sha(repo_dir)
        if revision not in ("main", sha):
            return JSONResponse(
                {"error": f"Invalid rev id: {revision}"},
                status_code=404,
                headers={"X-Error-Code": "RevisionNotFound"},
            )
        return repo_dir, sha

    def info(repo_type: str, repo_id: str, revision: str, request: Request) -> Response:
        found = resolve(repo_type, repo_id, revision, request)
        if isinstance(found, Response):
            return found
        repo_dir, sha = found
        blobs = request.query_params.get("blobs") in ("true", "True", "1")
        siblings = []
        for path in hub.files(repo_dir):
            sibling: dict[str, Any] = {"rfilename": path.relative_to(repo_dir).as_posix()}
            if blobs:
                entry = hub.entry(repo_dir, path)
                sibling.update(size=entry["size"], blobId=entry["oid"], lfs=entry.get("lfs"))
            siblings.append(sibling)
        return JSONResponse(
            {
                "_id": sha[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": repo_id in hub.private,
                "gated": repo_id in hub.gated and "auto",
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
            }
        )

    @app.get("/api/{kind}")
    async def list_repos(kind: str, request: Request) -> Response:
        _repo_type(kind)  # only models / datasets / spaces are listed; anything else is a 404
        author = request.query_params.get("author")
        base = hub.root / "datasets" if kind == "datasets" else hub.root
        repos = []
        for org in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
            if org.name == "datasets" or (author and org.name != author):
                continue
            for repo in sorted(p for p in org.iterdir() if p.is_dir()):
                repo_id = f"{org.name}/{repo.name}"
                if repo_id in hub.private or repo_id in hub.gated:
                    continue
                repos.append(
                    {
                        "_id": repo_id,
                        "id": repo_id,
                        "modelId": repo_id,
                        "author": org.name,
                        "private": False,
                        "downloads": 0,
                        "likes": 0,
                        "tags": [],
                        "createdAt": "2026-01-01T00:00:00.000Z",
                    }
                )
        return JSONResponse(repos)

    @app.get("/api/{kind}/{org}/{name}")
    async def repo_info(kind: str, org: str, name: str, request: Request) -> Response:
        return info(_repo_type(kind), f"{org}/{name}", "main", request)

    @app.get("/api/{kind}/{org}/{name}/revision/{revision}")
    async def repo_info_rev(
        kind: str, org: str, name: str, revision: str, request: Request
    ) -> Response:
        return info(_repo_type(kind), f"{org}/{name}", revision, request)

    @app.post("/api/{kind}/{org}/{name}/paths-info/{revision}")
    async def paths_info(
        kind: str, org: str, name: str, revision: str, request: Request
    ) -> Response:
        found = resolve(_repo_type(kind), f"{org}/{name}", revision, request)
        if isinstance(found, Response):
            return found
        repo_dir, _ = found
        body = (await request.body()).decode("utf-8", "replace")
        if request.headers.get("content-type", "").startswith("application/json"):
            paths = [str(p) for p in json.loads(body or "{}").get("paths", [])]
        else:
            paths = parse_qs(body).get("paths", [])
        entries = []
        for rel in paths:
            target = (repo_dir / rel).resolve()
            if target.is_relative_to(repo_dir.resolve()) and target.exists():
                entries.append(hub.entry(repo_dir, target))
        return JSONResponse(entries)

    @app.get("/api/{kind}/{org}/{name}/tree/{revision}")
    @app.get("/api/{kind}/{org}/{name}/tree/{revision}/{path:path}")
    async def tree(
        kind: str, org: str, name: str, revision: str, request: Request, path: str = ""
    ) -> Response:
        found = resolve(_repo_type(kind), f"{org}/{name}", revision, request)
        if isinstance(found, Response):
            return found
        repo_dir, _ = found
        base = repo_dir / path
        if not base.is_dir():
            return JSONResponse(
                {"error": "Entry not found"},
                status_code=404,
                headers={"X-Error-Code": "EntryNotFound"},
            )
        recursive = request.query_params.get("recursive") in ("true", "True", "1")
        children = base.rglob("*") if recursive else base.iterdir()
        entries = [
            hub.entry(repo_dir, p)
            for p in sorted(children)
            if not any(part.startswith(".") for part in p.relative_to(repo_dir).parts)
        ]
        return JSONResponse(entries)

    @app.api_route("/{org}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    async def model_file(
        org: str, name: str, revision: str, path: str, request: Request
    ) -> Response:
        return serve_file("model", f"{org}/{name}", revision, path, request)

    @app.api_route("/datasets/{org}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    async def dataset_file(
        org: str, name: str, revision: str, path: str, request: Request
    ) -> Response:
        return serve_file("dataset", f"{org}/{name}", revision, path, request)

    def serve_file(
        repo_type: str, repo_id: str, revision: str, path: str, request: Request
    ) -> Response:
        found = resolve(repo_type, repo_id, revision, request)
        if isinstance(found, Response):
            return found
        repo_dir, sha = found
        target = (repo_dir / path).resolve()
        if not target.is_relative_to(repo_dir.resolve()) or not target.is_file():
            return JSONResponse(
                {"error": "Entry not found"},
                status_code=404,
                headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha},
            )
        size = target.stat().st_size
        etag = f'"{hub.sha256(target)}"'
        headers = {
            "X-Repo-Commit": sha,
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "X-Linked-Size": str(size),
            "X-Linked-Etag": etag,
        }
        start, end = 0, size - 1
        status = 200
        spec = request.headers.get("range")
        if spec:
            parsed = _parse_range(spec, size)
            if parsed is None:
                return Response(
                    status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
                )
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        with hub._lock:
            hub.stats.bytes_sent += length
        return StreamingResponse(
            _read_range(target, start, length),
            status_code=status,
            headers=headers,
            media_type="application/octet-stream",
        )

    @app.get("/_hub/stats")
    async def stats() -> dict[str, Any]:
        return {
            "requests": hub.stats.requests,
            "bytes_sent": hub.stats.bytes_sent,
            "by_path": hub.stats.by_path,
        }

    return app


REPO_KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}


def _repo_type(kind: str) -> str:
    """The repo type of a ``/api/<kind>/...`` route. Any other kind is a 404: answering an
    unknown route (huggingface_hub asks e.g. ``/api/agent-harnesses`` and caches the answer in
    the user's HF cache for a day) would poison every later huggingface_hub call."""
    if kind not in REPO_KINDS:
        raise HTTPException(status_code=404, detail=f"Not found: /api/{kind}")
    return REPO_KINDS[kind]


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    unit, _, value = spec.partition("=")
    if unit.strip() != "bytes" or "," in value:
        return None
    first, _, last = value.strip().partition("-")
    try:
        if not first:
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 and size else None
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (start, end) if start <= end and start < size else None


def _read_range(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        while length > 0:
            chunk = fh.read(min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
