"""Eval sets: JSONL rows with ``prompt`` or ``messages``, ``expected``, optional ``metric``,
``tags`` and ``id``. A bad row is refused with its line number and the field at fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator

from prefect_together_lora.errors import SourceError, TogetherLoraError


class EvalSetError(TogetherLoraError):
    """The eval set is unreadable, empty, or has a malformed row (line and field named)."""


class EvalRow(BaseModel):
    id: str
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    expected: list[str] = Field(min_length=1)
    metric: str | None = None
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("row must be a JSON object")
        if (data.get("prompt") is None) == (data.get("messages") is None):
            raise ValueError("exactly one of 'prompt' or 'messages' is required")
        expected = data.get("expected")
        if isinstance(expected, str):
            data = {**data, "expected": [expected]}
        tags = data.get("tags")
        if isinstance(tags, str):
            data = {**data, "tags": [tags]}
        return data

    def as_messages(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return self.messages
        return [{"role": "user", "content": self.prompt or ""}]

    @property
    def prompt_text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        users = [m.get("content", "") for m in self.messages or [] if m.get("role") == "user"]
        return users[-1] if users else ""


def parse_eval_set(text: str, origin: str = "eval set") -> list[EvalRow]:
    rows: list[EvalRow] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{origin} line {number}: not valid JSON ({exc.msg}).") from None
        if isinstance(data, dict) and "id" not in data:
            data["id"] = f"row-{number}"
        elif isinstance(data, dict):
            data["id"] = str(data["id"])
        try:
            row = EvalRow.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "row"
            raise EvalSetError(
                f"{origin} line {number}: field '{field}': {error['msg']}."
            ) from None
        if row.id in seen:
            raise EvalSetError(f"{origin} line {number}: duplicate id '{row.id}'.")
        seen.add(row.id)
        rows.append(row)
    if not rows:
        raise EvalSetError(f"{origin} is empty: an evaluation needs at least one row.")
    return rows


def load_eval_set(
    uri: str,
    *,
    hf_token: str | SecretStr | None = None,
    hf_endpoint: str | None = None,
    s3_client: Any | None = None,
) -> list[EvalRow]:
    """From a local path, ``s3://bucket/key.jsonl`` or ``hf://datasets/org/name/path.jsonl``."""
    return parse_eval_set(_read_text(uri, hf_token, hf_endpoint, s3_client), uri.split("?")[0])


def _read_text(
    uri: str, hf_token: str | SecretStr | None, hf_endpoint: str | None, s3_client: Any | None
) -> str:
    if uri.startswith("s3://"):
        from botocore.exceptions import ClientError

        from prefect_together_lora.sources.s3 import make_s3_client, split_s3_uri

        bucket, key = split_s3_uri(uri, "The eval set")
        client = s3_client or make_s3_client()
        try:
            return str(client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))
        except ClientError as exc:
            raise EvalSetError(
                f"Cannot read eval set {uri}: {exc.response.get('Error', {}).get('Code', exc)}"
            ) from None
    if uri.startswith("hf://"):
        return _read_hub(uri, hf_token, hf_endpoint)
    path = Path(uri).expanduser()
    if not path.is_file():
        raise EvalSetError(
            f"Eval set {uri} does not exist (local path, s3://... or "
            "hf://datasets/org/name/file.jsonl)."
        )
    return path.read_text(encoding="utf-8")


def _read_hub(uri: str, hf_token: str | SecretStr | None, hf_endpoint: str | None) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    from prefect_together_lora.redaction import secret_value
    from prefect_together_lora.sources.hf import default_endpoint

    parts = uri[5:].split("/")
    if len(parts) < 4 or parts[0] != "datasets":
        raise EvalSetError(f"{uri}: expected hf://datasets/org/name/path/to/file.jsonl")
    repo, revision = f"{parts[1]}/{parts[2]}", None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    try:
        local = hf_hub_download(
            repo,
            "/".join(parts[3:]),
            repo_type="dataset",
            revision=revision,
            token=secret_value(hf_token) or False,
            endpoint=hf_endpoint or default_endpoint(),
        )
    except (HfHubHTTPError, OSError, SourceError) as exc:
        raise EvalSetError(f"Cannot read eval set {uri}: {type(exc).__name__}") from None
    return Path(local).read_text(encoding="utf-8")
