"""Resolving and reading any source (each kind does the work: see
:class:`~prefect_together_lora.sources.base.AdapterSource`), and the archive readers the
archive kinds share: a local file, or a URL read by ranges (zip, tar) or streamed (tar.gz)."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from prefect_together_lora.errors import SourceError
from prefect_together_lora.redaction import strip_query
from prefect_together_lora.sources.archive import (
    DEFAULT_DEADLINE_S,
    AdapterFiles,
    CountingFile,
    CountingStream,
    archive_format,
    gzip_trailer_problem,
    read_tar,
    read_zip,
)
from prefect_together_lora.sources.base import AdapterSource, ResolvedSource, SourceContext
from prefect_together_lora.sources.ranged import (
    HttpRangeReader,
    RangedReader,
    get_stream,
    http_error_message,
)
from prefect_together_lora.sources.s3 import DEFAULT_LIFETIME_S

if TYPE_CHECKING:
    import httpx


def resolve_source(
    source: AdapterSource,
    *,
    expires_s: int = DEFAULT_LIFETIME_S,
    s3_client: Any | None = None,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
    http_client: httpx.Client | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> ResolvedSource:
    """Sign S3 archives, pin Hub revisions, fingerprint everything."""
    with SourceContext(
        s3_client=s3_client,
        hf_token=hf_token,
        hf_endpoint=hf_endpoint,
        expires_s=expires_s,
        http_client=http_client,
        deadline_s=deadline_s,
    ) as ctx:
        return source.resolve(ctx)


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
    with SourceContext(
        s3_client=s3_client,
        hf_token=hf_token,
        hf_endpoint=hf_endpoint,
        http_client=http_client,
        sample_bytes=sample_bytes,
        deadline_s=deadline_s,
    ) as ctx:
        files = resolved.source.read_files(resolved, ctx)
    files.fingerprint = resolved.fingerprint
    return files


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


def read_local_archive(path: Path, ctx: SourceContext) -> AdapterFiles:
    with path.open("rb") as raw, CountingFile(raw) as fh:
        head = fh.read(512)
        detected = detect_format(head)
        expected = archive_format(path.name)
        if detected not in ("zip", "tar", "tar.gz") or (expected and expected != detected):
            raise FormatMismatch(expected, detected)
        fh.seek(0)
        if detected == "zip":
            files = read_zip(fh, sample_bytes=ctx.sample_bytes, deadline_s=ctx.deadline_s)
        else:
            files = read_tar(
                fh,
                stream=detected == "tar.gz",
                fmt=detected,
                sample_bytes=ctx.sample_bytes,
                deadline_s=ctx.deadline_s,
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


def read_remote_archive(url: SecretStr, expected: str | None, ctx: SourceContext) -> AdapterFiles:
    """An archive behind a URL: zip and tar by ranges (format sniffed from the bytes), tar.gz
    streamed; ``expected`` is the format the name says, if any."""
    if expected == "tar.gz":
        return _stream_tar_gz(url, ctx)
    reader = HttpRangeReader(url, client=ctx.http(), deadline_s=ctx.deadline_s)
    try:
        detected = _sniff(reader)
        if detected not in ("zip", "tar", "tar.gz") or (expected and expected != detected):
            raise FormatMismatch(expected, detected)
        if detected == "tar.gz":
            reader.close()
            return _stream_tar_gz(url, ctx)
        if detected == "zip":
            files = read_zip(reader, sample_bytes=ctx.sample_bytes, deadline_s=ctx.deadline_s)
        else:
            files = read_tar(
                reader, stream=False, sample_bytes=ctx.sample_bytes, deadline_s=ctx.deadline_s
            )
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


def _stream_tar_gz(url: SecretStr, ctx: SourceContext) -> AdapterFiles:
    """One streamed GET, abandoned once both adapter members are read, plus one ranged GET of
    the last 8 bytes: the gzip trailer that tells a whole archive from a cut one."""
    import httpx

    http = ctx.http()
    try:
        with get_stream(http, url.get_secret_value()) as response:
            if response.status_code != 200:
                response.read()
                raise SourceError(http_error_message(strip_query(url.get_secret_value()), response))
            chunks = response.iter_raw(16 * 1024)
            first = next(chunks, b"")
            if not first.startswith(b"\x1f\x8b"):
                raise FormatMismatch("tar.gz", detect_format(first))
            stream = CountingStream(itertools.chain([first], chunks), deadline_s=ctx.deadline_s)
            files = read_tar(
                stream,
                stream=True,
                fmt="tar.gz",
                sample_bytes=ctx.sample_bytes,
                deadline_s=ctx.deadline_s,
            )
            files.bytes_read, files.requests = stream.bytes_read, 1
        with HttpRangeReader(url, client=http, buffer_size=8, deadline_s=ctx.deadline_s) as tail:
            tail.seek(max(0, tail.size - 8))
            _check_gzip_trailer(files, tail.read(8))
            files.bytes_read += tail.bytes_read
            files.requests += tail.requests
        return files
    except httpx.HTTPError as exc:
        raise SourceError(f"Could not stream the archive: {type(exc).__name__}") from None
