"""A Hugging Face Hub repo (``hf://org/repo[@revision]`` or its URL): the revision pinned to a
commit sha, metadata read through the Hub API; Together fetches the repo itself (with the
token, for a private one). Also where a fleet scan lists an author's repos."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from prefect_together_lora.errors import SourceError
from prefect_together_lora.redaction import secret_value
from prefect_together_lora.sources.archive import AdapterFiles
from prefect_together_lora.sources.base import AdapterSource, ResolvedSource, SourceContext
from prefect_together_lora.sources.hf import default_endpoint, read_hub, resolve_revision

HUB_URL = "https://huggingface.co"
HUB_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
_REPO_PART = r"[A-Za-z0-9][\w.-]*"
_HF_ID = re.compile(rf"^(?P<repo>{_REPO_PART}/{_REPO_PART})(?:@(?P<rev>[\w./-]+))?$")


class HubSource(AdapterSource):
    kind: Literal["hub"] = "hub"
    repo_id: str
    revision: str | None = None

    is_repository = True
    forms = (
        ("hf://org/repo[@revision]", "a Hugging Face Hub repo"),
        ("https://huggingface.co/org/repo[/tree/revision]", "the same, as a Hub URL"),
    )

    @classmethod
    def recognise(cls, text: str) -> HubSource | None:
        if text.startswith("hf://"):
            return cls._from_id(text[5:], text)
        if text.startswith(("https://", "http://")) and urlsplit(text).hostname in HUB_HOSTS:
            parts = [p for p in urlsplit(text).path.split("/") if p]
            if len(parts) < 2:
                raise SourceError(f"Hub URL '{text}' names no repo (expected /org/repo).")
            rev = parts[3] if len(parts) >= 4 and parts[2] in ("tree", "resolve", "blob") else None
            return cls._from_id(f"{parts[0]}/{parts[1]}" + (f"@{rev}" if rev else ""), text)
        return None

    @classmethod
    def _from_id(cls, text: str, raw: str) -> HubSource:
        match = _HF_ID.match(text.strip("/"))
        if not match:
            raise SourceError(f"'{raw}' is not a Hub repo (expected hf://org/repo[@revision]).")
        repo, rev = match.group("repo"), match.group("rev")
        return cls(display=f"hf://{repo}" + (f"@{rev}" if rev else ""), repo_id=repo, revision=rev)

    def resolve(self, ctx: SourceContext) -> ResolvedSource:
        sha = resolve_revision(
            self.repo_id, self.revision, token=ctx.hf_token, endpoint=ctx.hf_endpoint
        )
        return ResolvedSource(source=self, fingerprint=f"hf:{self.repo_id}@{sha}", revision_sha=sha)

    def read_files(self, resolved: ResolvedSource, ctx: SourceContext) -> AdapterFiles:
        return read_hub(
            self.repo_id,
            resolved.revision_sha or "",
            token=ctx.hf_token,
            endpoint=ctx.hf_endpoint,
            sample_bytes=ctx.sample_bytes,
        )

    def together_url(self, resolved: ResolvedSource) -> SecretStr:
        return SecretStr(f"{HUB_URL}/{self.repo_id}")

    def moved_since(self, resolved: ResolvedSource, ctx: SourceContext) -> str | None:
        """H2: the commit the revision points at now, when it differs from the validated one."""
        if resolved.revision_sha is None or self.revision == resolved.revision_sha:
            return None  # pinned to a commit: it cannot move
        current = resolve_revision(
            self.repo_id, self.revision, token=ctx.hf_token, endpoint=ctx.hf_endpoint
        )
        return current if current != resolved.revision_sha else None

    @classmethod
    def discover(cls, location: str, ctx: SourceContext) -> list[tuple[str, str]] | None:
        """The model repos of ``hf://<author>``."""
        if not location.startswith("hf://"):
            return None
        from huggingface_hub import HfApi

        author = location[5:].strip("/").split("/")[0]
        api = HfApi(
            endpoint=ctx.hf_endpoint or default_endpoint(),
            token=secret_value(ctx.hf_token) or False,
        )
        return [(f"hf://{m.id}", m.id.split("/", 1)[1]) for m in api.list_models(author=author)]
