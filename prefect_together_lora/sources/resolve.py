"""From a parsed source to something readable: a presigned URL or a pinned Hub revision, plus
a content fingerprint (S3 ETag, Hub commit sha, local sha256) that caching keys on."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field, SecretStr

from prefect_together_lora.errors import SourceError
from prefect_together_lora.redaction import strip_query
from prefect_together_lora.sources import AdapterSource, SourceKind, archive_format
from prefect_together_lora.sources.archive import (
    DEFAULT_DEADLINE_S,
    AdapterFiles,
    CountingFile,
    CountingStream,
    gzip_trailer_problem,
    read_directory,
    read_s3_folder,
    read_tar,
    read_zip,
)
from prefect_together_lora.sources.hf import read_hub, resolve_revision
from prefect_together_lora.sources.local import file_sha256, folder_fingerprint
from prefect_together_lora.sources.ranged import (
    HttpRangeReader,
    RangedReader,
    get_stream,
    http_error_message,
    safe_http_client,
)
from prefect_together_lora.sources.s3 import (
    DEFAULT_LIFETIME_S,
    head_object,
    list_objects,
    make_s3_client,
    presign_get,
)

HUB_URL = "https://huggingface.co"


class ResolvedSource(BaseModel):
    """A source ready for validation and upload. ``url`` is a secret (presigned)."""

    source: AdapterSource
    fingerprint: str
    url: SecretStr | None = None
    expires_at: datetime | None = None
    revision_sha: str | None = None
    size_bytes: int | None = None
    warnings: list[str] = Field(default_factory=list)

    @property
    def model_source(self) -> SecretStr:
        """What Together's ``model_source`` gets: the presigned URL, or the Hub repo URL."""
        if self.source.kind == SourceKind.HUB:
            return SecretStr(f"{HUB_URL}/{self.source.repo_id}")
        if self.url is None:
            raise SourceError(
                f"{self.source.display} has no URL Together could fetch; stage it to S3 first."
            )
        return self.url


def resolve_source(
    source: AdapterSource,
    *,
    expires_s: int = DEFAULT_LIFETIME_S,
    s3_client: Any | None = None,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
) -> ResolvedSource:
    """Sign S3 archives, pin Hub revisions, fingerprint everything."""
    if source.kind == SourceKind.S3_ARCHIVE:
        assert source.bucket and source.key
        client = s3_client or make_s3_client()
        info = head_object(client, source.bucket, source.key)
        signed = presign_get(source.bucket, source.key, expires_s=expires_s, client=client)
        return ResolvedSource(
            source=source,
            fingerprint=info.fingerprint,
            url=signed.url,
            expires_at=signed.expires_at,
            size_bytes=info.size,
            warnings=signed.warnings,
        )
    if source.kind == SourceKind.HUB:
        assert source.repo_id
        sha = resolve_revision(
            source.repo_id, source.revision, token=hf_token, endpoint=hf_endpoint
        )
        return ResolvedSource(
            source=source, fingerprint=f"hf:{source.repo_id}@{sha}", revision_sha=sha
        )
    if source.kind == SourceKind.URL:
        assert source.url is not None
        with HttpRangeReader(source.url, buffer_size=1) as reader:
            tag = reader.etag or reader.version_id
            size = reader.size
        if not tag:
            raise SourceError(
                f"{source.display} sent no ETag: the content cannot be "
                "fingerprinted. Use s3://bucket/key so the plugin presigns it."
            )
        return ResolvedSource(
            source=source,
            fingerprint=f"etag:{tag.strip(chr(34))}-{size}",
            url=source.url,
            size_bytes=size,
        )
    if source.kind == SourceKind.LOCAL_DIR:
        assert source.path
        return ResolvedSource(source=source, fingerprint=folder_fingerprint(Path(source.path)))
    if source.kind == SourceKind.LOCAL_ARCHIVE:
        assert source.path
        path = Path(source.path)
        return ResolvedSource(
            source=source, fingerprint=f"sha256:{file_sha256(path)}", size_bytes=path.stat().st_size
        )
    assert source.kind == SourceKind.S3_PREFIX and source.bucket is not None
    objects = list_objects(s3_client or make_s3_client(), source.bucket, source.key or "")
    if not objects:
        raise SourceError(f"{source.display} holds no objects.")
    listing = "\n".join(sorted(f"{o.key}\0{o.fingerprint}" for o in objects))
    return ResolvedSource(
        source=source,
        fingerprint="s3-folder:" + hashlib.sha256(listing.encode()).hexdigest(),
        size_bytes=sum(o.size for o in objects),
    )


def is_local_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host)
        return address.is_loopback or address.is_private or address.is_link_local
    return False


def detect_format(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) >= 9 and head[8:9] == b"{":
        return "raw safetensors file"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON file"
    return "unknown"


class FormatMismatch(SourceError):
    """The archive is not .zip/.tar/.tar.gz, or its bytes contradict its extension."""

    def __init__(self, expected: str | None, detected: str) -> None:
        self.detected = detected
        said = f" but the file name says .{expected}" if expected else ""
        super().__init__(f"Archive must be .zip, .tar or .tar.gz (detected: {detected}{said}).")


def read_adapter_files(
    resolved: ResolvedSource,
    *,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
    http_client: httpx.Client | None = None,
    s3_client: Any | None = None,
    sample_bytes: int = 0,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> AdapterFiles:
    """Read members, config and safetensors header — never the weights (with
    ``sample_bytes``, also that many bytes of the data region, for the optional T9 rule);
    reading an archive gives up after ``deadline_s``."""
    source = resolved.source
    if source.kind == SourceKind.HUB:
        assert source.repo_id and resolved.revision_sha
        return read_hub(
            source.repo_id,
            resolved.revision_sha,
            token=hf_token,
            endpoint=hf_endpoint,
            sample_bytes=sample_bytes,
        )
    if source.kind == SourceKind.LOCAL_DIR:
        assert source.path
        files = read_directory(Path(source.path), sample_bytes)
    elif source.kind == SourceKind.LOCAL_ARCHIVE:
        assert source.path
        files = _read_local_archive(Path(source.path), sample_bytes, deadline_s)
    elif source.kind == SourceKind.S3_PREFIX:
        assert source.bucket is not None
        files = read_s3_folder(
            s3_client or make_s3_client(), source.bucket, source.key or "", sample_bytes
        )
    elif resolved.url is not None:
        files = _read_remote_archive(resolved.url, source, http_client, sample_bytes, deadline_s)
    else:
        raise SourceError(f"{source.display} cannot be read before it is staged and signed.")
    files.fingerprint = resolved.fingerprint
    return files


def _read_local_archive(path: Path, sample_bytes: int, deadline_s: float) -> AdapterFiles:
    with path.open("rb") as raw, CountingFile(raw) as fh:
        head = fh.read(512)
        detected = detect_format(head)
        expected = archive_format(path.name)
        if detected not in ("zip", "tar", "tar.gz") or (expected and expected != detected):
            raise FormatMismatch(expected, detected)
        fh.seek(0)
        if detected == "zip":
            files = read_zip(fh, sample_bytes=sample_bytes, deadline_s=deadline_s)
        else:
            files = read_tar(
                fh,
                stream=detected == "tar.gz",
                fmt=detected,
                sample_bytes=sample_bytes,
                deadline_s=deadline_s,
            )
        if detected == "tar.gz":
            fh.seek(max(0, path.stat().st_size - 8))
            _check_gzip_trailer(files, fh.read(8))
        files.bytes_read = fh.bytes_read
        files.requests = 0
    return files


def _check_gzip_trailer(files: AdapterFiles, trailer: bytes) -> None:
    problem = gzip_trailer_problem(trailer)
    if problem:
        files.notes.append(f"archive is truncated or corrupt: {problem}")


def _read_remote_archive(
    url: SecretStr,
    source: AdapterSource,
    client: httpx.Client | None,
    sample_bytes: int,
    deadline_s: float,
) -> AdapterFiles:
    expected = source.archive_format
    if expected == "tar.gz":
        return _stream_tar_gz(url, client, sample_bytes, deadline_s)
    reader = HttpRangeReader(url, client=client, deadline_s=deadline_s)
    try:
        detected = _sniff(reader)
        if detected not in ("zip", "tar", "tar.gz") or (expected and expected != detected):
            raise FormatMismatch(expected, detected)
        if detected == "tar.gz":
            reader.close()
            return _stream_tar_gz(url, client, sample_bytes, deadline_s)
        if detected == "zip":
            files = read_zip(reader, sample_bytes=sample_bytes, deadline_s=deadline_s)
        else:
            files = read_tar(reader, stream=False, sample_bytes=sample_bytes, deadline_s=deadline_s)
        files.bytes_read, files.requests = reader.bytes_read, reader.requests
        return files
    finally:
        reader.close()


def _sniff(reader: RangedReader) -> str:
    """Format from the tail already fetched (zip end record) or, failing that, the head."""
    tail_start = max(0, reader.size - reader.buffer_size)
    reader.seek(tail_start)
    tail = reader.read(reader.size - tail_start)
    if b"PK\x05\x06" in tail[-(22 + 65535) :]:
        return "zip"
    reader.seek(0)
    head = reader.read(512)
    reader.seek(0)
    return detect_format(head)


def _stream_tar_gz(
    url: SecretStr,
    client: httpx.Client | None,
    sample_bytes: int = 0,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> AdapterFiles:
    """One streamed GET, abandoned once both adapter members are read, plus one ranged GET of
    the last 8 bytes: the gzip trailer that tells a whole archive from a cut one."""
    own = client is None
    http = client or safe_http_client(min(30.0, deadline_s))
    try:
        with get_stream(http, url.get_secret_value()) as response:
            if response.status_code != 200:
                response.read()
                raise SourceError(http_error_message(strip_query(url.get_secret_value()), response))
            chunks = response.iter_raw(16 * 1024)
            first = next(chunks, b"")
            if not first.startswith(b"\x1f\x8b"):
                raise FormatMismatch("tar.gz", detect_format(first))
            stream = CountingStream(itertools.chain([first], chunks), deadline_s=deadline_s)
            files = read_tar(
                stream, stream=True, fmt="tar.gz", sample_bytes=sample_bytes, deadline_s=deadline_s
            )
            files.bytes_read, files.requests = stream.bytes_read, 1
        with HttpRangeReader(url, client=http, buffer_size=8, deadline_s=deadline_s) as tail:
            tail.seek(max(0, tail.size - 8))
            _check_gzip_trailer(files, tail.read(8))
            files.bytes_read += tail.bytes_read
            files.requests += tail.requests
        return files
    except httpx.HTTPError as exc:
        raise SourceError(f"Could not stream the archive: {type(exc).__name__}") from None
    finally:
        if own:
            http.close()
