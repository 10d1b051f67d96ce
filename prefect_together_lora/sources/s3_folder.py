"""An S3 folder of adapter files (``s3://bucket/runs/7/``): read with the caller's credentials
(ranged ``get_object``), its adapter files staged as one zip; also where a fleet scan lists
archives and adapter folders."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from functools import partial
from typing import IO, Any, Literal

from prefect_together_lora.errors import SourceError
from prefect_together_lora.sources.archive import (
    CONFIG,
    AdapterFiles,
    archive_format,
    read_s3_folder,
)
from prefect_together_lora.sources.base import (
    AdapterSource,
    ResolvedSource,
    SourceContext,
    StagingEntry,
)
from prefect_together_lora.sources.local import wanted
from prefect_together_lora.sources.s3 import list_objects, split_s3_uri


class S3FolderSource(AdapterSource):
    kind: Literal["s3_prefix"] = "s3_prefix"
    bucket: str
    prefix: str = ""

    needs_staging = True
    uses_s3 = True
    forms = (("s3://bucket/path/to/adapter/", "an S3 folder of adapter files"),)

    @classmethod
    def recognise(cls, text: str) -> S3FolderSource | None:
        if not text.startswith("s3://"):
            return None
        bucket, key = split_s3_uri(text, "The adapter source")
        prefix = key if not key or key.endswith("/") else f"{key}/"
        return cls(display=f"s3://{bucket}/{prefix}", bucket=bucket, prefix=prefix)

    def resolve(self, ctx: SourceContext) -> ResolvedSource:
        objects = list_objects(ctx.s3, self.bucket, self.prefix)
        if not objects:
            raise SourceError(f"{self.display} holds no objects.")
        listing = "\n".join(
            sorted(
                f"{o.key}\0{o.fingerprint}"
                for o in objects
                if wanted(o.key[len(self.prefix) :].lstrip("/"))
            )
        )
        return ResolvedSource(
            source=self,
            fingerprint="s3-folder:" + hashlib.sha256(listing.encode()).hexdigest(),
            size_bytes=sum(o.size for o in objects),
        )

    def read_files(self, resolved: ResolvedSource, ctx: SourceContext) -> AdapterFiles:
        return read_s3_folder(ctx.s3, self.bucket, self.prefix, ctx.sample_bytes)

    def staging_entries(
        self, ctx: SourceContext, extra_files: Sequence[str]
    ) -> Iterator[StagingEntry]:
        objects = list_objects(ctx.s3, self.bucket, self.prefix)
        if not objects:
            raise SourceError(f"{self.display} holds no objects.")
        for obj in objects:
            relative = obj.key[len(self.prefix) :].lstrip("/")
            if relative and not obj.key.endswith("/") and wanted(relative, extra_files):
                yield relative, partial(_body, ctx.s3, self.bucket, obj.key)

    @classmethod
    def discover(cls, location: str, ctx: SourceContext) -> list[tuple[str, str]] | None:
        """Archives, and folders holding an adapter_config.json, under the prefix."""
        found = cls.recognise(location)
        if found is None:
            return None
        bucket, prefix = found.bucket, found.prefix
        objects = list_objects(ctx.s3, bucket, prefix)
        archives = sorted(o.key for o in objects if archive_format(o.key))
        folders = sorted(
            {
                o.key[: -len(CONFIG)]
                for o in objects
                if o.key.endswith(f"/{CONFIG}") or o.key == prefix + CONFIG
            }
        )
        return [
            (f"s3://{bucket}/{key}", key[len(prefix) :].rsplit(".", 2)[0]) for key in archives
        ] + [(f"s3://{bucket}/{f}", f[len(prefix) :].strip("/") or "root") for f in folders]


def _body(client: Any, bucket: str, key: str) -> IO[bytes]:
    body: IO[bytes] = client.get_object(Bucket=bucket, Key=key)["Body"]
    return body
