"""Where an adapter lives: parse a user's source string into a typed :class:`AdapterSource`."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

from prefect_together_lora.errors import SourceError
from prefect_together_lora.redaction import strip_query

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
_REPO_PART = r"[A-Za-z0-9][\w.-]*"
_HF_ID = re.compile(rf"^(?P<repo>{_REPO_PART}/{_REPO_PART})(?:@(?P<rev>[\w./-]+))?$")

ACCEPTED_FORMS = """\
  s3://bucket/path/adapter.zip | .tar.gz | .tgz | .tar   an archive in S3 (files at its root)
  s3://bucket/path/to/adapter/                            an S3 folder of adapter files
  hf://org/repo[@revision]                                a Hugging Face Hub repo
  https://huggingface.co/org/repo[/tree/revision]         the same, as a Hub URL
  /path/to/adapter-folder  or  /path/to/adapter.zip       a local folder or archive
  https://...presigned-url...                             an S3 presigned URL, used as is"""


class SourceKind(str, Enum):
    LOCAL_DIR = "local_dir"
    LOCAL_ARCHIVE = "local_archive"
    S3_ARCHIVE = "s3_archive"
    S3_PREFIX = "s3_prefix"
    HUB = "hub"
    URL = "url"


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


class AdapterSource(BaseModel):
    """A parsed adapter location. ``display`` is safe to show; ``url`` (a presigned URL given
    as is) is a secret."""

    kind: SourceKind
    display: str
    path: str | None = None
    bucket: str | None = None
    key: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    url: SecretStr | None = None

    @property
    def archive_format(self) -> str | None:
        name = (
            self.key or self.path or (strip_query(self.url.get_secret_value()) if self.url else "")
        )
        return archive_format(name or "")

    @property
    def needs_staging(self) -> bool:
        """Together fetches one archive by presigned URL: local files and S3 folders must be
        packaged and put in S3 first."""
        return self.kind in (SourceKind.LOCAL_DIR, SourceKind.LOCAL_ARCHIVE, SourceKind.S3_PREFIX)

    @classmethod
    def s3(cls, bucket: str, key: str) -> AdapterSource:
        return cls.parse(f"s3://{bucket}/{key}")

    @classmethod
    def parse(cls, text: str | Path) -> AdapterSource:
        """Parse any accepted form; an unknown one raises :class:`SourceError` listing them."""
        raw = str(text).strip()
        if not raw:
            raise SourceError(f"The adapter source is empty. Accepted forms:\n{ACCEPTED_FORMS}")
        if raw.startswith("s3://"):
            return cls._parse_s3(raw)
        if raw.startswith("hf://"):
            return cls._parse_hub_id(raw[5:], raw)
        if raw.startswith(("https://", "http://")):
            parts = urlsplit(raw)
            if parts.hostname in ("huggingface.co", "www.huggingface.co", "hf.co"):
                return cls._parse_hub_url(parts.path)
            if not parts.query:
                raise SourceError(
                    f"'{strip_query(raw)}' is a plain URL, not a presigned one: Together fetches "
                    "S3 archives only through presigned URLs. Pass s3://bucket/key instead (the "
                    f"plugin presigns it) or a presigned URL. Accepted forms:\n{ACCEPTED_FORMS}"
                )
            return cls(kind=SourceKind.URL, display=strip_query(raw), url=SecretStr(raw))
        path = Path(raw[7:] if raw.startswith("file://") else raw).expanduser()
        if path.is_dir():
            return cls(
                kind=SourceKind.LOCAL_DIR, display=str(path.resolve()), path=str(path.resolve())
            )
        if path.is_file():
            if archive_format(path.name) is None:
                raise SourceError(
                    f"'{path}' is a file but not an archive (.zip, .tar.gz, .tgz, .tar). Pass "
                    "the folder that holds adapter_config.json and adapter_model.safetensors."
                )
            return cls(
                kind=SourceKind.LOCAL_ARCHIVE, display=str(path.resolve()), path=str(path.resolve())
            )
        if "://" in raw or not (raw.startswith(("/", ".", "~")) or path.parent.exists()):
            raise SourceError(
                f"Unrecognised adapter source '{strip_query(raw)}'. Accepted "
                f"forms:\n{ACCEPTED_FORMS}"
            )
        raise SourceError(f"Local path '{path}' does not exist. Accepted forms:\n{ACCEPTED_FORMS}")

    @classmethod
    def _parse_s3(cls, raw: str) -> AdapterSource:
        rest = raw[5:]
        bucket, _, key = rest.partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket or ""):
            raise SourceError(
                f"'{raw}' has no valid bucket name. Accepted forms:\n{ACCEPTED_FORMS}"
            )
        key = unquote(key)
        if archive_format(key):
            return cls(
                kind=SourceKind.S3_ARCHIVE, display=f"s3://{bucket}/{key}", bucket=bucket, key=key
            )
        prefix = key if not key or key.endswith("/") else f"{key}/"
        return cls(
            kind=SourceKind.S3_PREFIX, display=f"s3://{bucket}/{prefix}", bucket=bucket, key=prefix
        )

    @classmethod
    def _parse_hub_id(cls, text: str, raw: str) -> AdapterSource:
        match = _HF_ID.match(text.strip("/"))
        if not match:
            raise SourceError(
                f"'{raw}' is not a Hub repo (expected hf://org/repo[@revision]). "
                f"Accepted forms:\n{ACCEPTED_FORMS}"
            )
        repo, rev = match.group("repo"), match.group("rev")
        return cls(
            kind=SourceKind.HUB,
            display=f"hf://{repo}" + (f"@{rev}" if rev else ""),
            repo_id=repo,
            revision=rev,
        )

    @classmethod
    def _parse_hub_url(cls, path: str) -> AdapterSource:
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2:
            raise SourceError(f"Hub URL path '{path}' names no repo (expected /org/repo).")
        rev = parts[3] if len(parts) >= 4 and parts[2] in ("tree", "resolve", "blob") else None
        return cls._parse_hub_id(f"{parts[0]}/{parts[1]}" + (f"@{rev}" if rev else ""), path)
