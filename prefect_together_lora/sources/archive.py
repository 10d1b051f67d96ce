"""Read what validation needs from an adapter — the member list, ``adapter_config.json`` and the
safetensors header — without reading the weights.

Zip: the end record, central directory (zip64 too), the config and the first bytes of the
safetensors member (a deflated member is inflated only as far as its header). Plain tar: headers
walked by ranges. tar.gz: streamed and abandoned as soon as both members have been seen.
Folders: straight from disk. Each reader counts the bytes and requests it used.
"""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from prefect_together_lora.errors import ArchiveCorrupt, SourceError
from prefect_together_lora.sources.safetensors import (
    HeaderProblem,
    SafetensorsHeader,
    parse_header,
    read_exactly,
    read_header_bytes,
)

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
MAX_CONFIG_BYTES = 1_000_000
MAX_MEMBERS = 100_000
# ~150 bytes an entry for MAX_MEMBERS: checked from the end record before zipfile parses it
MAX_CENTRAL_DIRECTORY = 16 * 1024 * 1024
# pax / GNU long-name headers are read whole by tarfile: a real one is a few hundred bytes
MAX_EXTENDED_HEADER = 1024 * 1024
# a .tar.gz must be inflated up to the adapter files; other members ahead of them are
# decompressed and thrown away, and only this much of them is accepted
MAX_SKIPPED_BYTES = 256 * 1024 * 1024
DEFAULT_DEADLINE_S = 120.0
Readable = BinaryIO | IO[bytes] | io.RawIOBase


@dataclass
class Member:
    name: str
    size: int
    is_dir: bool = False
    method: int | None = None
    encrypted: bool = False
    # "file" or "dir"; anything else (symlink, hardlink, device, fifo) is never extracted
    kind: str = "file"


@dataclass
class AdapterFiles:
    """Everything rules look at: members, the config bytes and the parsed header (or why not)."""

    format: str
    members: list[Member]
    config: bytes | None = None
    config_error: str | None = None
    header: SafetensorsHeader | None = None
    header_error: str | None = None
    weights_size: int | None = None
    data_sample: bytes = b""
    bytes_read: int = 0
    requests: int = 0
    fingerprint: str = ""
    notes: list[str] = field(default_factory=list)


def archive_format(name: str) -> str | None:
    """``zip``, ``tar.gz`` or ``tar`` from a file name, else None."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if lower.endswith(".tar"):
        return "tar"
    return None


def clean_name(name: str) -> str:
    """Member names as printable text: undecodable bytes become U+FFFD, never surrogates."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def normalize_member(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def is_junk(name: str) -> bool:
    """``__MACOSX/`` trees and ``._*`` AppleDouble files, ignored before any layout check."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def _limited_read(stream: IO[bytes], limit: int, what: str) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise SourceError(f"{what} is larger than {limit:,} bytes")
    return data


def _header_from(
    read: Callable[[int], bytes], size: int | None, files: AdapterFiles, sample_bytes: int = 0
) -> None:
    """Parse the header; with ``sample_bytes``, also keep the start of the data region (T9)."""
    try:
        _, raw = read_header_bytes(read, size)
        files.header = parse_header(raw, size)
    except HeaderProblem as exc:
        files.header_error = str(exc)
        return
    if sample_bytes > 0:
        files.data_sample = read_exactly(read, min(sample_bytes, files.header.data_end))


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise SourceError(
                f"Reading the adapter's metadata took longer than {self.seconds:.0f}s and was "
                "abandoned: the source is too slow or stalled."
            )


def read_zip(
    fileobj: Readable, *, deadline_s: float = DEFAULT_DEADLINE_S, sample_bytes: int = 0
) -> AdapterFiles:
    deadline = _Deadline(deadline_s)
    _check_zip_directory(cast(IO[bytes], fileobj))
    try:
        archive = zipfile.ZipFile(cast(IO[bytes], fileobj))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveCorrupt(f"not a readable zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ArchiveCorrupt(f"zip has {len(infos):,} entries (limit {MAX_MEMBERS:,})")
        members = [
            Member(
                clean_name(i.filename),
                i.file_size,
                i.is_dir(),
                i.compress_type,
                bool(i.flag_bits & 0x1),
                _zip_kind(i),
            )
            for i in infos
        ]
        files = AdapterFiles("zip", members)
        by_name: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            by_name.setdefault(normalize_member(info.filename), info)
        config = by_name.get(CONFIG)
        if config is not None and _readable(config):
            deadline.check()
            try:
                with archive.open(config) as fh:
                    files.config = _limited_read(fh, MAX_CONFIG_BYTES, CONFIG)
            except SourceError as exc:
                files.config_error = str(exc)
            except _MEMBER_ERRORS as exc:
                raise ArchiveCorrupt(f"{CONFIG} cannot be read from the zip ({exc})") from None
        weights = by_name.get(WEIGHTS)
        if weights is not None and _readable(weights):
            deadline.check()
            files.weights_size = weights.file_size
            try:
                with archive.open(weights) as fh:
                    _header_from(fh.read, weights.file_size, files, sample_bytes)
            except _MEMBER_ERRORS as exc:
                raise ArchiveCorrupt(f"{WEIGHTS} cannot be read from the zip ({exc})") from None
    return files


_MEMBER_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error)
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")


def _check_zip_directory(fh: IO[bytes]) -> None:
    """Entry count and central-directory size from the end record, *before* zipfile parses a
    directory that could hold a million entries; a broken zip64 record is named as such."""
    size = fh.seek(0, io.SEEK_END)
    # as zipfile does: the end record without a comment first (with room for a zip64
    # locator before it), the longest comment only when that is not it
    for tail_len in (_END.size + _END64_LOCATOR.size, _END.size + 65535):
        fh.seek(size - min(size, tail_len))
        tail = fh.read(min(size, tail_len))
        at = len(tail) - _END.size
        if tail[at : at + 4] != b"PK\x05\x06":
            at = tail.rfind(b"PK\x05\x06")
        if at >= 0:
            break
    if at < 0 or len(tail) - at < _END.size:
        raise ArchiveCorrupt(
            "no zip end-of-central-directory record: the file is truncated or not a zip"
        )
    _, _, _, _, entries, cd_size, cd_offset, _ = _END.unpack_from(tail, at)
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        locator = at - _END64_LOCATOR.size
        if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
            raise ArchiveCorrupt("the zip64 end-of-central-directory locator is missing")
        _, _, record_at, _ = _END64_LOCATOR.unpack_from(tail, locator)
        fh.seek(record_at)
        record = fh.read(_END64.size)
        if len(record) < _END64.size or record[:4] != b"PK\x06\x06":
            raise ArchiveCorrupt(
                f"the zip64 end-of-central-directory record at offset {record_at:,} is broken"
            )
        _, _, _, _, _, _, _, entries, cd_size, cd_offset = _END64.unpack(record)
    fh.seek(0)
    if entries > MAX_MEMBERS:
        raise ArchiveCorrupt(f"zip has {entries:,} entries (limit {MAX_MEMBERS:,})")
    if cd_size > MAX_CENTRAL_DIRECTORY:
        raise ArchiveCorrupt(
            f"the zip's central directory is {cd_size:,} bytes "
            f"(limit {MAX_CENTRAL_DIRECTORY:,}): too many or too long entry names"
        )


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)  # 0 when the writer set permissions only
    if info.create_system == 3 and file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
        return "symlink" if stat.S_ISLNK(mode) else "special file"
    return "dir" if info.is_dir() else "file"


def _readable(info: zipfile.ZipInfo) -> bool:
    return not (info.flag_bits & 0x1) and info.compress_type in (
        zipfile.ZIP_STORED,
        zipfile.ZIP_DEFLATED,
    )


def read_tar(
    fileobj: Readable,
    *,
    stream: bool,
    deadline_s: float = DEFAULT_DEADLINE_S,
    fmt: str = "tar",
    sample_bytes: int = 0,
) -> AdapterFiles:
    """Plain tar over a seekable reader (``stream=False``) or tar.gz over a forward-only stream
    (``stream=True``: stops as soon as both adapter members have been read; other members
    ahead of them are inflated only up to ``MAX_SKIPPED_BYTES``)."""
    deadline = _Deadline(deadline_s)
    files = AdapterFiles(fmt, [])
    mode = "r|gz" if stream else "r:"
    skipped = 0
    try:
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=fileobj, mode=mode, tarinfo=_GuardedTarInfo
        ) as archive:
            for member in _iter_tar(archive):
                deadline.check()
                name = normalize_member(member.name)
                files.members.append(
                    Member(
                        clean_name(member.name), member.size, member.isdir(), kind=_tar_kind(member)
                    )
                )
                if len(files.members) > MAX_MEMBERS:
                    raise ArchiveCorrupt(f"tar has more than {MAX_MEMBERS:,} entries")
                if name == CONFIG and member.isfile() and files.config is None:
                    handle = archive.extractfile(member)
                    if handle is not None:
                        files.config = _limited_read(handle, MAX_CONFIG_BYTES, CONFIG)
                elif (
                    name == WEIGHTS
                    and member.isfile()
                    and files.header is None
                    and files.header_error is None
                ):
                    files.weights_size = member.size
                    handle = archive.extractfile(member)
                    if handle is not None:
                        _header_from(handle.read, member.size, files, sample_bytes)
                elif stream and member.isfile():
                    skipped += member.size
                    if skipped > MAX_SKIPPED_BYTES and not _both_read(files):
                        raise ArchiveUncheckable(clean_name(member.name), member.size, skipped)
                if stream and _both_read(files):
                    files.notes.append("stream abandoned after both adapter members")
                    break
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        if not files.members:
            raise ArchiveCorrupt(f"not a readable {fmt} archive ({exc})") from None
        files.notes.append(
            f"archive is truncated or corrupt after {len(files.members)} entries ({exc})"
        )
    return files


def _both_read(files: AdapterFiles) -> bool:
    return files.config is not None and (files.header is not None or files.header_error is not None)


class ArchiveUncheckable(SourceError):
    """A .tar.gz whose adapter files sit behind more data than validation will inflate."""

    def __init__(self, member: str, size: int, skipped: int) -> None:
        super().__init__(
            f"The .tar.gz holds '{member}' ({size:,} bytes) ahead of the adapter files: a "
            f"gzip stream cannot be read by ranges, and inflating {skipped:,} bytes of other "
            f"files (limit {MAX_SKIPPED_BYTES:,}) to reach them is refused."
        )


class _GuardedTarInfo(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header whole, at whatever size it claims (a 2 MB
    .tar.gz can claim 2 GiB): refuse one larger than any real name or pax record set."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES and self.size > MAX_EXTENDED_HEADER:
            raise ArchiveCorrupt(
                f"a tar extended header claims {self.size:,} bytes "
                f"(limit {MAX_EXTENDED_HEADER:,}): the archive is corrupt or hostile"
            )
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member


_EXTENDED_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "special file"


def _iter_tar(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = archive.next()
        if member is None:
            return
        yield member


def gzip_trailer_problem(trailer: bytes) -> str | None:
    """A whole tar.gz ends with the uncompressed size mod 2**32, and a tar is whole 512-byte
    blocks: any other value means the gzip stream was cut short (this catches a truncated
    download without reading the weights; a cut that lands on a multiple is 1 in 512)."""
    if len(trailer) < 8:
        return "the file is too short to hold a gzip trailer"
    (isize,) = struct.unpack("<I", trailer[-4:])
    if isize % 512:
        return (
            "its gzip trailer does not describe a whole tar (the stream is cut short: "
            "truncated upload or copy?)"
        )
    return None


def read_directory(path: Path, sample_bytes: int = 0) -> AdapterFiles:
    members = []
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        try:
            size = 0 if item.is_dir() else item.stat().st_size
        except OSError:  # a dangling link: never staged, nothing to list
            continue
        members.append(Member(rel + ("/" if item.is_dir() else ""), size, item.is_dir()))
        if len(members) > MAX_MEMBERS:
            raise ArchiveCorrupt(f"folder has more than {MAX_MEMBERS:,} entries")
    files = AdapterFiles("dir", members)
    config = path / CONFIG
    if config.is_file():
        with config.open("rb") as fh:
            try:
                files.config = _limited_read(fh, MAX_CONFIG_BYTES, CONFIG)
            except SourceError as exc:
                files.config_error = str(exc)
    weights = path / WEIGHTS
    if weights.is_file():
        files.weights_size = weights.stat().st_size
        with weights.open("rb") as fh:
            _header_from(fh.read, files.weights_size, files, sample_bytes)
    header = 8 + files.header.header_len if files.header else 8
    files.bytes_read = len(files.config or b"") + header + len(files.data_sample)
    return files


class CountingFile(io.RawIOBase):
    """A seekable local file that counts the bytes actually read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


class CountingStream(io.RawIOBase):
    """A forward-only stream over byte chunks, counting what it consumed."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        on_close: Callable[[], Any] | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = b""
        self.bytes_read = 0
        self._on_close = on_close
        self._deadline = _Deadline(deadline_s)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._buffer:
            self._deadline.check()  # a source dripping bytes cannot hold validation forever
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
            self.bytes_read += len(self._buffer)
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        if self._on_close is not None and not self.closed:
            self._on_close()
        super().close()


def read_s3_folder(client: Any, bucket: str, prefix: str, sample_bytes: int = 0) -> AdapterFiles:
    """An S3 folder of adapter files, read with the caller's credentials (ranged GETs)."""
    from prefect_together_lora.sources.ranged import S3RangeReader
    from prefect_together_lora.sources.s3 import list_objects

    objects = list_objects(client, bucket, prefix)
    members = [Member(o.key[len(prefix) :], o.size) for o in objects if o.key != prefix]
    files = AdapterFiles("s3-folder", members, requests=1)
    sizes = {m.name: m.size for m in members}
    if CONFIG in sizes:
        if sizes[CONFIG] > MAX_CONFIG_BYTES:
            files.config_error = f"{CONFIG} is larger than {MAX_CONFIG_BYTES:,} bytes"
        else:
            body = client.get_object(Bucket=bucket, Key=prefix + CONFIG)["Body"]
            files.config = body.read()
            files.requests += 1
            files.bytes_read += len(files.config or b"")
    if WEIGHTS in sizes:
        files.weights_size = sizes[WEIGHTS]
        with S3RangeReader(client, bucket, prefix + WEIGHTS, start_at_head=True) as reader:
            _header_from(reader.read, files.weights_size, files, sample_bytes)
            files.requests += reader.requests
            files.bytes_read += reader.bytes_read
    return files
