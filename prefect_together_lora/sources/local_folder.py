"""A local folder (a training output folder, a ``save_pretrained`` folder, a Hub cache
snapshot): read from disk; only the adapter files are hashed and staged (zipped) to S3."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Literal

from prefect_together_lora.sources.archive import AdapterFiles, read_directory
from prefect_together_lora.sources.base import (
    AdapterSource,
    ResolvedSource,
    SourceContext,
    StagingEntry,
)
from prefect_together_lora.sources.local import adapter_files, folder_fingerprint, local_path


class LocalFolderSource(AdapterSource):
    kind: Literal["local_dir"] = "local_dir"
    path: str

    needs_staging = True
    forms = (("/path/to/adapter-folder", "a local folder (only the adapter files are sent)"),)

    @classmethod
    def recognise(cls, text: str) -> LocalFolderSource | None:
        path = local_path(text)
        if path is None or not path.is_dir():
            return None
        return cls(display=str(path.resolve()), path=str(path.resolve()))

    def resolve(self, ctx: SourceContext) -> ResolvedSource:
        return ResolvedSource(source=self, fingerprint=folder_fingerprint(Path(self.path)))

    def read_files(self, resolved: ResolvedSource, ctx: SourceContext) -> AdapterFiles:
        return read_directory(Path(self.path), ctx.sample_bytes)

    def staging_entries(
        self, ctx: SourceContext, extra_files: Sequence[str]
    ) -> Iterator[StagingEntry]:
        for relative, path in adapter_files(Path(self.path), extra_files):
            yield relative, partial(_open, path)


def _open(path: Path) -> IO[bytes]:
    return path.open("rb")
