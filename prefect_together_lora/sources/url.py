"""A presigned URL given as is (``https://…?X-Amz-Signature=…``): used by Together exactly as
given, read by ranges, fingerprinted by its ETag."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from prefect_together_lora.errors import SourceError
from prefect_together_lora.redaction import strip_query
from prefect_together_lora.sources.archive import AdapterFiles, archive_format
from prefect_together_lora.sources.base import AdapterSource, ResolvedSource, SourceContext
from prefect_together_lora.sources.hub import HUB_HOSTS
from prefect_together_lora.sources.ranged import HttpRangeReader
from prefect_together_lora.sources.resolve import read_remote_archive


class UrlSource(AdapterSource):
    kind: Literal["url"] = "url"
    url: SecretStr

    forms = (("https://...presigned-url...", "an S3 presigned URL, used as is"),)

    @classmethod
    def recognise(cls, text: str) -> UrlSource | None:
        if not text.startswith(("https://", "http://")):
            return None
        parts = urlsplit(text)
        if parts.hostname in HUB_HOSTS:
            return None
        if not parts.query:
            raise SourceError(
                f"'{strip_query(text)}' is a plain URL, not a presigned one: Together fetches "
                "S3 archives only through presigned URLs. Pass s3://bucket/key instead (the "
                "plugin presigns it) or a presigned URL."
            )
        return cls(display=strip_query(text), url=SecretStr(text))

    def given_url(self) -> SecretStr:
        return self.url

    def archive_format(self) -> str | None:
        return archive_format(strip_query(self.url.get_secret_value()))

    def resolve(self, ctx: SourceContext) -> ResolvedSource:
        with HttpRangeReader(
            self.url, client=ctx.http(), buffer_size=1, deadline_s=ctx.deadline_s
        ) as reader:
            tag = reader.etag or reader.version_id
            size = reader.size
        if not tag:
            raise SourceError(
                f"{self.display} sent no ETag: the content cannot be fingerprinted. Use "
                "s3://bucket/key so the plugin presigns it."
            )
        return ResolvedSource(
            source=self,
            fingerprint=f"etag:{tag.strip(chr(34))}-{size}",
            url=self.url,
            size_bytes=size,
        )

    def read_files(self, resolved: ResolvedSource, ctx: SourceContext) -> AdapterFiles:
        return read_remote_archive(self.url, self.archive_format(), ctx)
