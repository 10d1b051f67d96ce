"""A local archive (``/path/adapter.zip``): read from disk, staged to S3 as it is (Together
fetches one archive by presigned URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect_together_lora.errors import SourceError
from prefect_together_lora.sources.archive import AdapterFiles, archive_format
from prefect_together_lora.sources.base import AdapterSource, ResolvedSource, SourceContext
from prefect_together_lora.sources.local import file_sha256, local_path
from prefect_together_lora.sources.resolve import read_local_archive


class LocalArchiveSource(AdapterSource):
    kind: Literal["local_archive"] = "local_archive"
    path: str

    needs_staging = True
    forms = (("/path/to/adapter.zip | .tar.gz | .tar", "a local archive"),)

    @classmethod
    def recognise(cls, text: str) -> LocalArchiveSource | None:
        path = local_path(text)
        if path is None or not path.is_file():
            return None
        if archive_format(path.name) is None:
            raise SourceError(
                f"'{path}' is a file but not an archive (.zip, .tar.gz, .tgz, .tar). Pass "
                "the folder that holds adapter_config.json and adapter_model.safetensors."
            )
        return cls(display=str(path.resolve()), path=str(path.resolve()))

    def archive_format(self) -> str | None:
        return archive_format(self.path)

    def resolve(self, ctx: SourceContext) -> ResolvedSource:
        path = Path(self.path)
        return ResolvedSource(
            source=self, fingerprint=f"sha256:{file_sha256(path)}", size_bytes=path.stat().st_size
        )

    def read_files(self, resolved: ResolvedSource, ctx: SourceContext) -> AdapterFiles:
        return read_local_archive(Path(self.path), ctx)

    def staged_archive(self) -> Path:
        return Path(self.path)
