"""Seekable, buffered readers over ranged reads (HTTP Range or S3 ranged ``get_object``).

Fed to the standard library's ``zipfile``/``tarfile``, they turn "read this member" into a few
small ranged GETs: the adapter is never downloaded. Presigned GET URLs refuse HEAD, so the size
comes from the ``Content-Range`` of the first (suffix) range request. Every read has a timeout
and the total is capped, so a hostile server can neither hang nor flood us.
"""

from __future__ import annotations

import contextlib
import functools
import io
import ipaddress
import re
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from prefect_together_lora.errors import SourceError
from prefect_together_lora.redaction import redact, secret_value, strip_query

if TYPE_CHECKING:
    import httpx

DEFAULT_BUFFER = 64 * 1024
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


MAX_REDIRECTS = 5


class UrlRefused(SourceError):
    """A source URL points where the plugin must never send a request (cloud metadata, ...)."""


def check_fetchable(url: str) -> None:
    """Refuse, before any request, a URL whose scheme is not http(s) or whose host is (or
    resolves to) a link-local address (169.254.169.254 is every cloud's metadata service), an
    unspecified, multicast or reserved one. Loopback and private hosts stay allowed: local S3
    servers, MinIO and the emulator live there."""
    parts = urlsplit(url)
    display = strip_query(url)
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"'{display}' is not an http(s) URL; only http(s) sources are fetched.")
    host = (parts.hostname or "").strip("[]")
    if not host:
        raise UrlRefused(f"'{display}' names no host.")
    if _forbidden_host(host):
        raise UrlRefused(_refusal(display, host))


@functools.lru_cache(maxsize=256)
def _forbidden_host(host: str) -> bool:
    """Whether ``host`` is, or resolves to, an address sources are never fetched from (one DNS
    lookup per host and process, not one per ranged read)."""
    addresses: set[str] = set()
    try:
        addresses.add(str(ipaddress.ip_address(host)))
    except ValueError:
        if host.endswith((".internal", ".local")) or host == "metadata":
            return True
        with contextlib.suppress(OSError, UnicodeError):
            addresses |= {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        address = getattr(address, "ipv4_mapped", None) or address
        if (
            address.is_link_local
            or address.is_unspecified
            or address.is_multicast
            or address.is_reserved
        ):
            return True
    return False


def _refusal(display: str, host: str) -> str:
    return (
        f"'{display}' points at {host}, a link-local, metadata or reserved address: adapter "
        "sources are never fetched from there. Use s3://bucket/key or a presigned S3 URL."
    )


@contextlib.contextmanager
def get_stream(
    client: httpx.Client, url: str, headers: dict[str, str] | None = None
) -> Iterator[httpx.Response]:
    """A streamed GET that follows at most ``MAX_REDIRECTS`` redirects itself, checking every
    hop with :func:`check_fetchable` (httpx's own following would not)."""
    import httpx

    for _ in range(MAX_REDIRECTS + 1):
        check_fetchable(url)
        with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
            if not response.is_redirect:
                yield response
                return
            location = response.headers.get("location")
        if not location:
            raise SourceError(f"{strip_query(url)} answered a redirect without a Location.")
        url = str(httpx.URL(url).join(location))
    raise SourceError(
        f"{strip_query(url)}: more than {MAX_REDIRECTS} redirects (a redirect loop?); "
        "give the final URL of the archive."
    )


def safe_http_client(timeout_s: float = 30.0) -> httpx.Client:
    """The client for adapter sources: redirects are followed by :func:`get_stream` only."""
    import httpx

    return httpx.Client(timeout=timeout_s, follow_redirects=False)


class ReadBudgetExceeded(SourceError):
    """More bytes were needed than the reader's cap allows (a malformed or hostile archive)."""


class RangedReader(io.RawIOBase):
    """A read-only, seekable file over a ranged-read primitive, with a block cache."""

    def __init__(
        self,
        *,
        buffer_size: int = DEFAULT_BUFFER,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start_at_head: bool = False,
    ) -> None:
        super().__init__()
        self.buffer_size = buffer_size
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes_read = 0
        self.etag: str | None = None
        self.version_id: str | None = None
        self._pos = 0
        self._segments: list[tuple[int, bytes]] = []
        # The first request learns the size (Content-Range): the tail suits zip (end record,
        # central directory), the head suits a bare safetensors file (its header).
        self._size = self._open_head() if start_at_head else self._open_tail()

    # subclasses implement these two ---------------------------------------------------------
    def _request(self, range_header: str) -> tuple[bytes, int | None]:  # pragma: no cover
        """One ranged read: (body, total size from Content-Range, or None when the server
        ignored the range and sent the whole object)."""
        raise NotImplementedError

    def _whole(self, data: bytes) -> bytes:
        if len(data) > self.max_bytes:
            raise ReadBudgetExceeded(f"{self._describe()} does not support Range requests.")
        return data

    def _describe(self) -> str:
        return "the object"

    def _fetch_tail(self, length: int) -> tuple[bytes, int]:
        data, total = self._request(f"bytes=-{length}")
        return (data, total) if total is not None else (self._whole(data), len(data))

    def _fetch_head(self, length: int) -> tuple[bytes, int]:
        data, total = self._request(f"bytes=0-{length - 1}")
        return (data, total) if total is not None else (self._whole(data)[:length], len(data))

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes [start, end] inclusive."""
        data, total = self._request(f"bytes={start}-{end}")
        return data if total is not None else self._whole(data)[start : end + 1]

    def _open_head(self) -> int:
        data, size = self._fetch_head(self.buffer_size)
        self._account(len(data))
        if data:
            self._segments.append((0, data))
        return size

    # ----------------------------------------------------------------------------------------
    def _open_tail(self) -> int:
        data, size = self._fetch_tail(self.buffer_size)
        self._account(len(data))
        if data:
            self._segments.append((size - len(data), data))
        return size

    def _account(self, n: int) -> None:
        self.requests += 1
        self.bytes_read += n
        if self.bytes_read > self.max_bytes:
            raise ReadBudgetExceeded(
                f"Reading the archive needed more than {self.max_bytes} bytes; it is malformed "
                "or far larger than an adapter's metadata should require."
            )

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError("negative seek position")
        self._pos = position
        return position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self._size - self._pos))
        if want == 0:
            return 0
        data = self._read_at(self._pos, want)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _read_at(self, start: int, length: int) -> bytes:
        """Serve from cached blocks; fetch only what they do not cover (one ranged GET of at
        least ``buffer_size``), so a read straddling a cached block never re-downloads it."""
        prefix = b""
        for seg_start, seg in self._segments:
            if seg_start <= start < seg_start + len(seg):
                prefix = seg[start - seg_start : start - seg_start + length]
                break
        if len(prefix) == length:
            return prefix
        missing_at = start + len(prefix)
        fetch_len = max(length - len(prefix), self.buffer_size)
        end = min(self._size, missing_at + fetch_len) - 1
        data = self._fetch(missing_at, end)
        self._account(len(data))
        self._segments.append((missing_at, data))
        if len(self._segments) > 32:
            self._segments.pop(0)
        return prefix + data[: length - len(prefix)]


ERROR_BODY_BYTES = 64 * 1024


class HttpRangeReader(RangedReader):
    """Ranged GETs on a URL (an S3 presigned URL, a Hub resolve URL): never HEAD."""

    def __init__(
        self,
        url: str | SecretStr,
        *,
        client: httpx.Client | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        deadline_s: float = 15.0,
        buffer_size: int = DEFAULT_BUFFER,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start_at_head: bool = False,
    ) -> None:
        self.deadline_s = deadline_s
        self._url = SecretStr(secret_value(url) or "")
        self._display = strip_query(self._url.get_secret_value())
        self._client = client or safe_http_client(min(timeout_s, deadline_s))
        self._owns_client = client is None
        self._headers = dict(headers or {})
        super().__init__(buffer_size=buffer_size, max_bytes=max_bytes, start_at_head=start_at_head)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
        super().close()

    def _request(self, range_header: str) -> tuple[bytes, int | None]:
        """One ranged GET, streamed: reading stops as soon as the body is longer than what was
        asked for (or than the read budget, when the server ignores Range), and a body that
        trickles in is cut at ``deadline_s``; an endless or dripping source can neither fill
        memory nor hang validation."""
        import httpx

        started = time.monotonic()
        try:
            with get_stream(
                self._client,
                self._url.get_secret_value(),
                headers={**self._headers, "Range": range_header},
            ) as response:
                if response.status_code not in (200, 206):
                    body = self._read_capped(response, ERROR_BODY_BYTES, started, truncate=True)
                    answer = httpx.Response(
                        response.status_code,
                        headers=response.headers,
                        content=body,
                        request=response.request,
                    )
                    raise SourceError(http_error_message(self._display, answer))
                self.etag = self.etag or response.headers.get("etag")
                self.version_id = self.version_id or response.headers.get("x-amz-version-id")
                whole = response.status_code == 200
                limit = self.max_bytes - self.bytes_read if whole else _range_length(range_header)
                body = self._read_capped(response, limit, started)
        except httpx.HTTPError as exc:
            raise SourceError(
                f"Could not read {self._display}: {type(exc).__name__}: "
                f"{redact(str(exc), [self._url])}"
            ) from None
        if whole:
            return body, None
        return body, _total_size(response, self._display)

    def _read_capped(
        self, response: httpx.Response, limit: int, started: float, *, truncate: bool = False
    ) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (size - limit)])
                    break
                if response.status_code == 200:
                    raise ReadBudgetExceeded(
                        f"{self._display} ignores Range requests and sends more than "
                        f"{self.max_bytes} bytes; only metadata is read here."
                    )
                raise SourceError(
                    f"{self._display} sent more than the {limit} bytes asked for; a server that "
                    "does not honour Range cannot be validated header-only."
                )
            chunks.append(chunk)
            if time.monotonic() - started > self.deadline_s:
                raise SourceError(
                    f"{self._display} did not finish sending {limit} bytes within "
                    f"{self.deadline_s:.0f}s; the source is too slow or stalled."
                )
        return b"".join(chunks)

    def _describe(self) -> str:
        return self._display


def _range_length(range_header: str) -> int:
    """How many bytes ``bytes=-N`` or ``bytes=a-b`` asks for."""
    spec = range_header.split("=", 1)[1]
    first, _, last = spec.partition("-")
    return int(last) if not first else int(last) - int(first) + 1


class S3RangeReader(RangedReader):
    """Ranged ``get_object`` calls with the caller's AWS credentials (no presigned URL)."""

    def __init__(
        self,
        s3_client: Any,
        bucket: str,
        key: str,
        *,
        buffer_size: int = DEFAULT_BUFFER,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start_at_head: bool = False,
    ) -> None:
        self._s3, self._bucket, self._key = s3_client, bucket, key
        super().__init__(buffer_size=buffer_size, max_bytes=max_bytes, start_at_head=start_at_head)

    def _get(self, range_header: str) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result: dict[str, Any] = self._s3.get_object(
                Bucket=self._bucket, Key=self._key, Range=range_header
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise SourceError(f"Cannot read s3://{self._bucket}/{self._key}: {code}") from None
        except BotoCoreError as exc:
            raise SourceError(f"Cannot read s3://{self._bucket}/{self._key}: {exc}") from None
        self.etag = self.etag or result.get("ETag")
        self.version_id = self.version_id or result.get("VersionId")
        return result

    def _describe(self) -> str:
        return f"s3://{self._bucket}/{self._key}"

    def _request(self, range_header: str) -> tuple[bytes, int | None]:
        result = self._get(range_header)
        data = bytes(result["Body"].read())
        match = _CONTENT_RANGE.match(result.get("ContentRange", "") or "")
        if match is None:
            return data, None
        return data, int(match.group(3)) if match.group(3) != "*" else None


def _total_size(response: httpx.Response, display: str) -> int:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    if not match or match.group(3) == "*":
        raise SourceError(f"{display} answered a range request without its total size.")
    return int(match.group(3))


def http_error_message(display: str, response: httpx.Response) -> str:
    """Status, S3 error code and a hint: never the body's free text, which a hostile or
    misconfigured server controls (and which may echo the request's signature)."""
    text = response.text[:2000] if response.content else ""
    found = re.fullmatch(r"[A-Za-z0-9.]{1,64}", _xml_code(text))
    code = f" {found.group(0)}" if found else ""
    hint = ""
    if response.status_code == 403:
        hint = (
            " The URL has expired or its signature is wrong: generate a new one (note that "
            "presigned GET URLs reject HEAD)."
        )
    elif response.status_code == 404:
        hint = " The object does not exist: check the bucket and key."
    elif response.status_code == 416:
        hint = " The object is empty."
    return f"GET on {display} returned {response.status_code}{code}.{hint}"


def _xml_code(text: str) -> str:
    found = re.search(r"<Code>([^<]{1,64})</Code>", text)
    return found.group(1) if found else ""
