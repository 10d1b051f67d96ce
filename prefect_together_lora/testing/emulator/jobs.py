"""What an emulated upload job does: download the source and check it the way Together does.

Deliberately independent of the plugin's validator (full download, standard library zip/tar
readers, a minimal safetensors header check) so a validator bug can never hide behind an
emulator that shares its code. Failure messages follow Together's troubleshooting notes.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from prefect_together_lora.testing.emulator.config import EmulatorConfig
    from prefect_together_lora.testing.emulator.store import Store

logger = logging.getLogger("prefect_together_lora.emulator")

REQUIRED = ("adapter_config.json", "adapter_model.safetensors")
MAX_DOWNLOAD = 8 * 1024**3
_HF_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")


class JobFailure(Exception):
    """The job fails with this message in its last status update."""


def classify_source(source: str) -> str:
    """``huggingface`` for a Hub URL or ``org/repo``, ``remote_archive`` for another URL."""
    if _HF_REPO.match(source):
        return "huggingface"
    parts = urlsplit(source)
    if parts.scheme in ("http", "https"):
        if parts.hostname and parts.hostname.endswith("huggingface.co"):
            return "huggingface"
        return "remote_archive"
    return "invalid"


def hf_repo_id(source: str) -> str:
    if _HF_REPO.match(source):
        return source
    return "/".join(urlsplit(source).path.strip("/").split("/")[:2])


def presigned_lifetime_s(url: str, now: float | None = None) -> float | None:
    """Seconds a SigV4/SigV2 presigned URL has left, or None when it is not presigned."""
    query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    now = time.time() if now is None else now
    if "x-amz-date" in query and "x-amz-expires" in query:
        start = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=timezone.utc
        )
        return start.timestamp() + float(query["x-amz-expires"]) - now
    if "expires" in query and "signature" in query:
        return float(query["expires"]) - now
    return None


class JobRunner:
    """Runs upload jobs on a small thread pool, moving them Queued → Running → Complete|Failed."""

    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        self.store = store
        self.config = config
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="emulator-job")

    def submit(
        self,
        job_id: str,
        source: str,
        model_type: str,
        base_model: str | None,
        hf_token: str | None,
    ) -> None:
        self._pool.submit(self._run, job_id, source, model_type, base_model, hf_token)

    def pool_submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the job pool (v2 uploads share it)."""
        self._pool.submit(fn, *args)

    def resume_pending(self) -> None:
        """After a restart with persistent state, finish the jobs that were in flight."""
        for doc in self.store.jobs():
            if doc["status"] in ("Complete", "Failed"):
                continue
            record = self.store.model(doc["args"]["modelName"])
            if record is not None:
                self.submit(
                    doc["job_id"],
                    doc["args"]["modelSource"],
                    record.model_type,
                    record.base_model,
                    None,
                )

    def shutdown(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _sleep(self, seconds: float) -> bool:
        return not self._stop.wait(max(0.0, seconds))

    def _run(
        self,
        job_id: str,
        source: str,
        model_type: str,
        base_model: str | None,
        hf_token: str | None,
    ) -> None:
        total = self.config.job_seconds
        shown = self.config.job_status_alias
        try:
            if not self._sleep(total * 0.2):
                return
            self.store.transition(job_id, "Running", "Downloading model weights", shown)
            if not self._sleep(total * 0.3):
                return
            self.check(source, model_type, base_model, hf_token)
            self.store.transition(
                job_id, "Running", "Validating and loading adapter weights", shown
            )
            if not self._sleep(total * 0.5):
                return
            self.store.transition(job_id, "Complete", "Job is Complete")
        except JobFailure as exc:
            self.store.transition(job_id, "Failed", str(exc))
        except Exception as exc:  # an emulator bug must still end the job, visibly
            logger.exception("emulator job %s crashed", job_id)
            self.store.transition(job_id, "Failed", f"Internal error processing model: {exc}")

    # -- the checks ----------------------------------------------------------------------------

    def check(
        self, source: str, model_type: str, base_model: str | None, hf_token: str | None
    ) -> None:
        if model_type == "adapter":
            supported = _supported_base_models(self.config.base_models)
            if not base_model:
                raise JobFailure("base_model is required for model_type 'adapter'.")
            if base_model not in supported:
                raise JobFailure(
                    f"Base model {base_model} is not supported for LoRA adapters. "
                    f"Supported base models: {', '.join(supported)}"
                )
        with tempfile.TemporaryDirectory(prefix="emulator-job-") as tmp:
            files = self.fetch(source, hf_token, Path(tmp))
            if model_type == "adapter":
                check_adapter_files(files)

    def fetch(self, source: str, hf_token: str | None, tmp: Path) -> dict[str, Path]:
        """Download the source (Hub repo or presigned archive) the way Together does; member
        name → extracted path. Raises :class:`JobFailure` with Together-like messages."""
        kind = classify_source(source)
        if kind == "huggingface":
            return self._fetch_hub(hf_repo_id(source), hf_token, tmp)
        if kind == "remote_archive":
            return self._fetch_archive(source, tmp)
        raise JobFailure("model_source must be a Hugging Face repo or a presigned URL.")

    def _fetch_archive(self, url: str, tmp: Path) -> dict[str, Path]:
        lifetime = presigned_lifetime_s(url)
        if lifetime is not None and lifetime <= 0:
            raise JobFailure(
                "Failed to download model weights: access denied (HTTP 403, Request has "
                "expired). The presigned URL has expired; generate a new one."
            )
        if lifetime is not None and lifetime < self.config.min_url_lifetime_s:
            minutes = max(0, int(lifetime // 60))
            raise JobFailure(
                f"Presigned URL expires in {minutes} minutes; it must be valid for at least "
                f"{int(self.config.min_url_lifetime_s // 60)} minutes. Generate a new URL."
            )
        archive = tmp / "archive"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, archive.open("wb") as out:
                copied = 0
                while chunk := response.read(1 << 20):
                    copied += len(chunk)
                    if copied > MAX_DOWNLOAD:
                        raise JobFailure("Archive is larger than the allowed size.")
                    out.write(chunk)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise JobFailure(
                    f"Failed to download model weights: access denied (HTTP {exc.code}). The "
                    "presigned URL is invalid or has expired; generate a new one."
                ) from None
            raise JobFailure(f"Failed to download model weights: HTTP {exc.code}.") from None
        except (urllib.error.URLError, OSError) as exc:
            raise JobFailure(f"Failed to download model weights: {exc}") from None
        return _extract(archive, tmp / "files")

    def _fetch_hub(self, repo_id: str, token: str | None, tmp: Path) -> dict[str, Path]:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
        )

        api = HfApi(endpoint=self.config.hf_endpoint, token=token or False)
        try:
            info = api.model_info(repo_id)
            names = [s.rfilename for s in info.siblings or []]
            files: dict[str, Path] = {}
            for name in REQUIRED:
                if name in names:
                    local = api.hf_hub_download(
                        repo_id, name, revision=info.sha, local_dir=tmp / "hub"
                    )
                    files[name] = Path(local)
            for name in names:
                files.setdefault(name, tmp / "hub" / name)
        except GatedRepoError:
            raise JobFailure(
                f"Unable to access Hugging Face repository {repo_id}: it is gated. Accept the "
                "gate and provide an hf_token with access."
            ) from None
        except RepositoryNotFoundError:
            raise JobFailure(
                f"Unable to access Hugging Face repository {repo_id}: it does not exist or is "
                "private. Provide an hf_token with read access."
            ) from None
        except HfHubHTTPError as exc:
            raise JobFailure(f"Failed to download from Hugging Face: {exc}") from None
        except OSError as exc:  # connection refused / DNS / timeouts (httpx errors included)
            raise JobFailure(f"Failed to download from Hugging Face: {exc}") from None
        except Exception as exc:
            if "connect" in type(exc).__name__.lower() or "timeout" in type(exc).__name__.lower():
                raise JobFailure(f"Failed to download from Hugging Face: {exc}") from None
            raise
        return files


def _supported_base_models(table: str) -> list[str]:
    from prefect_together_lora.testing.emulator.config import BASE_MODEL_TABLES

    return BASE_MODEL_TABLES.get(table, BASE_MODEL_TABLES["all"])


def _extract(archive: Path, dest: Path) -> dict[str, Path]:
    """Extract the archive's regular files; name → path, keyed by the member name."""
    dest.mkdir()
    with archive.open("rb") as fh:
        head = fh.read(512)
    files: dict[str, Path] = {}
    try:
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        files[info.filename] = _safe_write(dest, info.filename, zf.read(info))
        elif head.startswith(b"\x1f\x8b") or head[257:262] == b"ustar":
            with tarfile.open(archive, "r:*") as tf:
                for member in tf.getmembers():
                    if member.isfile():
                        data = tf.extractfile(member)
                        name = member.name[2:] if member.name.startswith("./") else member.name
                        files[name] = _safe_write(dest, name, data.read() if data else b"")
        else:
            raise JobFailure(
                "Unsupported archive format: the source must be a single .zip or .tar.gz archive."
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise JobFailure(f"Could not extract the archive: {exc}") from None
    return files


def _safe_write(dest: Path, name: str, data: bytes) -> Path:
    target = (dest / name).resolve()
    if not str(target).startswith(str(dest.resolve())):
        raise JobFailure(f"Archive entry '{name}' escapes the archive root.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def check_adapter_files(files: dict[str, Path]) -> None:
    """The files Together needs, at the root, a LoRA config and a well-formed safetensors."""
    names = [
        n for n in files if not n.startswith("__MACOSX/") and not Path(n).name.startswith("._")
    ]
    missing = [r for r in REQUIRED if r not in names]
    if missing:
        nested = sorted(
            {n.rsplit("/", 1)[0] for n in names if "/" in n and n.rsplit("/", 1)[1] in REQUIRED}
        )
        if nested:
            raise JobFailure(
                f"Adapter files must be at the root of the archive; found them inside "
                f"'{nested[0]}/'. Re-create the archive from inside that folder."
            )
        raise JobFailure(f"Missing required file(s): {', '.join(missing)}.")
    try:
        config = json.loads(files["adapter_config.json"].read_bytes())
    except ValueError as exc:
        raise JobFailure(f"adapter_config.json is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise JobFailure("adapter_config.json does not describe a LoRA adapter.")
    _check_safetensors(files["adapter_model.safetensors"].read_bytes())


def _check_safetensors(data: bytes) -> None:
    if len(data) < 8:
        raise JobFailure("adapter_model.safetensors is truncated.")
    (n,) = struct.unpack("<Q", data[:8])
    if n > 100_000_000 or 8 + n > len(data):
        raise JobFailure("adapter_model.safetensors has an invalid header.")
    try:
        header = json.loads(io.BytesIO(data[8 : 8 + n]).read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise JobFailure("adapter_model.safetensors has an invalid header.") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise JobFailure("adapter_model.safetensors contains no tensors.")
    end = max(int(v["data_offsets"][1]) for v in tensors.values())
    if 8 + n + end != len(data):
        raise JobFailure("adapter_model.safetensors is truncated or has trailing data.")
