"""An archive in S3 (``s3://bucket/path/adapter.zip``): presigned with the caller's credentials,
read by ranges through that URL (Together fetches the very same URL)."""

from __future__ import annotations

from typing import Literal

from prefect_together_lora.sources.archive import AdapterFiles, archive_format
from prefect_together_lora.sources.base import AdapterSource, ResolvedSource, SourceContext
from prefect_together_lora.sources.resolve import read_remote_archive
from prefect_together_lora.sources.s3 import head_object, presign_get, split_s3_uri


class S3ArchiveSource(AdapterSource):
    kind: Literal["s3_archive"] = "s3_archive"
    bucket: str
    key: str

    uses_s3 = True
    forms = (("s3://bucket/path/adapter.zip | .tar.gz | .tgz | .tar", "an archive in S3"),)

    @classmethod
    def recognise(cls, text: str) -> S3ArchiveSource | None:
        if not text.startswith("s3://"):
            return None
        bucket, key = split_s3_uri(text, "The adapter source")
        if archive_format(key) is None:
            return None
        return cls(display=f"s3://{bucket}/{key}", bucket=bucket, key=key)

    def archive_format(self) -> str | None:
        return archive_format(self.key)

    def resolve(self, ctx: SourceContext) -> ResolvedSource:
        info = head_object(ctx.s3, self.bucket, self.key)
        signed = presign_get(self.bucket, self.key, expires_s=ctx.expires_s, client=ctx.s3)
        return ResolvedSource(
            source=self,
            fingerprint=info.fingerprint,
            url=signed.url,
            expires_at=signed.expires_at,
            size_bytes=info.size,
            warnings=signed.warnings,
        )

    def read_files(self, resolved: ResolvedSource, ctx: SourceContext) -> AdapterFiles:
        return read_remote_archive(self.together_url(resolved), self.archive_format(), ctx)
