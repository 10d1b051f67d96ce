"""Local adapters: which files of a folder are the adapter, and their content fingerprint.

A training output folder holds much more than the adapter (optimizer state, ``checkpoint-*/``
folders, logs): Together serves only ``adapter_config.json`` and
``adapter_model.safetensors``, so only those are hashed and staged, plus extra files a user
names. An extra that is a symlink is refused (staging must never send what a link points at:
a credentials file, say); the adapter files themselves may be links (a Hub cache snapshot is
made of them) because validation reads and checks them before anything is staged.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from prefect_together_lora.errors import SourceError

CHUNK = 1 << 20
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def local_path(text: str) -> Path | None:
    """The path a source text names (``file://`` stripped), None for another scheme."""
    if text.startswith("file://"):
        return Path(text[7:]).expanduser()
    if "://" in text:
        return None
    return Path(text).expanduser()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def wanted(relative: str, extra_files: Sequence[str] = ()) -> bool:
    """Whether a file (path relative to the adapter's root) is part of what is staged."""
    return relative in ADAPTER_FILES or any(fnmatch.fnmatchcase(relative, p) for p in extra_files)


def adapter_files(folder: Path, extra_files: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """(relative name, path) of the files to stage, sorted; ``extra_files`` are glob patterns
    relative to the folder (``tokenizer*``, ``README.md``)."""
    chosen = [(name, folder / name) for name in ADAPTER_FILES if (folder / name).is_file()]
    if extra_files:
        chosen += [
            (rel, path) for rel, path in _extras(folder, extra_files) if rel not in ADAPTER_FILES
        ]
    return sorted(chosen)


def _extras(folder: Path, patterns: Sequence[str]) -> Iterable[tuple[str, Path]]:
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if not any(fnmatch.fnmatchcase(relative, p) for p in patterns):
            continue
        if path.is_symlink():
            raise SourceError(
                f"'{relative}' is a symbolic link: extra files are staged only as regular "
                "files (a link could send anything on this machine). Copy the file instead."
            )
        if path.is_file():
            yield relative, path


def folder_fingerprint(path: Path, extra_files: Sequence[str] = ()) -> str:
    """sha256 over the staged files' relative paths and content hashes: what Together would
    serve, never the rest of a training output folder (an 8 GiB optimizer state, say)."""
    digest = hashlib.sha256()
    for relative, item in adapter_files(path, extra_files):
        digest.update(f"{relative}\0{file_sha256(item)}\n".encode())
    return f"sha256:{digest.hexdigest()}"
