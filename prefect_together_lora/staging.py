"""Package the adapter files of a local folder or an S3 folder as one zip (files at the root) and
put it in S3 under a content-addressed key: Together fetches one archive by presigned URL.

The zip is deterministic (sorted names, fixed timestamps), so the same adapter always gives the
same sha256 and key, and an existing key is never uploaded again. Data streams through a
temporary file: memory stays constant whatever the adapter's size.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from prefect_together_lora.errors import SourceError
from prefect_together_lora.sources import AdapterSource, SourceContext, archive_format
from prefect_together_lora.sources.local import file_sha256
from prefect_together_lora.sources.s3 import head_object, make_s3_client, split_s3_uri

STAGING_ENV = "TOGETHER_LORA_STAGING_URI"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20


class StagedArchive(BaseModel):
    bucket: str
    key: str
    sha256: str
    size: int
    uploaded: bool

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def staging_location(staging_uri: str | None) -> tuple[str, str]:
    """(bucket, prefix) from ``s3://bucket/prefix`` or ``$TOGETHER_LORA_STAGING_URI``."""
    uri = staging_uri or os.environ.get(STAGING_ENV)
    if not uri:
        raise SourceError(
            "This source must be staged to S3 (Together fetches one archive by presigned URL) "
            f"but no staging location is set: pass staging_uri='s3://bucket/prefix' or set "
            f"{STAGING_ENV}."
        )
    bucket, prefix = split_s3_uri(uri, "staging_uri", "s3://bucket/prefix")
    return bucket, prefix.strip("/")


def write_zip(entries: Iterator[tuple[str, Callable[[], IO[bytes]]]], out: IO[bytes]) -> None:
    """A deterministic zip of ``(name, opener)`` entries; safetensors stored, the rest deflated."""
    with zipfile.ZipFile(out, "w", allowZip64=True) as archive:
        for name, opener in sorted(entries, key=lambda e: e[0]):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = (
                zipfile.ZIP_STORED if name.endswith(".safetensors") else zipfile.ZIP_DEFLATED
            )
            with opener() as src, archive.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)


@contextmanager
def _temp_file(suffix: str) -> Iterator[Path]:
    handle, name = tempfile.mkstemp(prefix="together-lora-", suffix=suffix)
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


Progress = Callable[[int, int], None]


class _Tenths:
    """boto3's transfer callback, turned into one report per 10 % (sent, total)."""

    def __init__(self, total: int, report: Progress) -> None:
        self.total, self.report, self.sent, self.last = total, report, 0, 0

    def __call__(self, chunk: int) -> None:
        self.sent += chunk
        tenth = self.sent * 10 // max(1, self.total)
        if tenth > self.last:
            self.last = tenth
            self.report(self.sent, self.total)


def _put_if_absent(
    client: Any,
    path: Path,
    bucket: str,
    key: str,
    sha256: str,
    progress: Progress | None = None,
) -> StagedArchive:
    size = path.stat().st_size
    try:
        existing = head_object(client, bucket, key)
    except SourceError:
        existing = None
    if existing is not None and existing.size == size:
        return StagedArchive(bucket=bucket, key=key, sha256=sha256, size=size, uploaded=False)
    client.upload_file(
        str(path),
        bucket,
        key,
        ExtraArgs={
            "Metadata": {"sha256": sha256},
            "ContentType": "application/zip" if key.endswith(".zip") else "application/gzip",
        },
        Callback=_Tenths(size, progress) if progress else None,
    )
    return StagedArchive(bucket=bucket, key=key, sha256=sha256, size=size, uploaded=True)


def stage_source(
    source: AdapterSource,
    staging_uri: str | None = None,
    *,
    s3_client: Any | None = None,
    progress: Progress | None = None,
    extra_files: Sequence[str] = (),
) -> StagedArchive:
    """Put a local folder, a local archive or an S3 folder in S3 as one archive;
    ``progress(sent, total)`` hears about the upload every 10 %. From a folder, only the two
    adapter files are packed, plus files matching the ``extra_files`` glob patterns."""
    if not source.needs_staging:
        raise SourceError(f"{source.display} does not need staging.")
    bucket, prefix = staging_location(staging_uri)
    client = s3_client or make_s3_client()
    archive = source.staged_archive()
    if archive is not None:  # an archive already: staged as it is
        fmt = archive_format(archive.name) or "zip"
        digest = file_sha256(archive)
        key = "/".join(p for p in (prefix, f"{digest}.{fmt}") if p)
        return _put_if_absent(client, archive, bucket, key, digest, progress)
    with _temp_file(".zip") as tmp:
        with tmp.open("wb") as out:
            write_zip(source.staging_entries(SourceContext(s3_client=client), extra_files), out)
        digest = file_sha256(tmp)
        key = "/".join(p for p in (prefix, f"{digest}.zip") if p)
        return _put_if_absent(client, tmp, bucket, key, digest, progress)
