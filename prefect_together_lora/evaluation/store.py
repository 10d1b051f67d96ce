"""Answers recorded as they arrive, so a retried or re-run evaluation never asks twice.

An answer is keyed by (model, messages, generation parameters): the same question with the same
settings has the same key on every run. Only successful answers are stored; errors are asked
again. Stores: local JSONL (default, under ``PREFECT_HOME``), S3 (``s3://bucket/prefix``, shared
by workers), or memory (tests, one-off runs).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from prefect_together_lora.hashing import digest


def answer_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    return digest(model, messages, params)


class AnswerStore(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, answer: dict[str, Any]) -> None: ...


class MemoryAnswerStore:
    def __init__(self) -> None:
        self._answers: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._answers.get(key)

    def put(self, key: str, answer: dict[str, Any]) -> None:
        self._answers[key] = answer


class LocalAnswerStore:
    """One JSONL file; each answer is appended and flushed the moment it arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self._answers[record["key"]] = record["answer"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a crash: that answer is simply asked again

    def get(self, key: str) -> dict[str, Any] | None:
        return self._answers.get(key)

    def put(self, key: str, answer: dict[str, Any]) -> None:
        with self._lock:
            self._answers[key] = answer
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "answer": answer}) + "\n")
                fh.flush()


class S3AnswerStore:
    """One small object per answer under ``s3://bucket/prefix/``."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        from prefect_together_lora.sources.s3 import list_objects

        self._client, self._bucket, self._prefix = client, bucket, prefix.strip("/")
        self._present = {o.key for o in list_objects(client, bucket, f"{self._prefix}/")}

    def _key(self, key: str) -> str:
        return f"{self._prefix}/{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self._key(key) not in self._present:
            return None
        body = self._client.get_object(Bucket=self._bucket, Key=self._key(key))["Body"].read()
        answer: dict[str, Any] = json.loads(body)
        return answer

    def put(self, key: str, answer: dict[str, Any]) -> None:
        self._client.put_object(
            Bucket=self._bucket, Key=self._key(key), Body=json.dumps(answer).encode()
        )
        self._present.add(self._key(key))


def open_store(uri: str | None, namespace: str) -> AnswerStore:
    """``memory``, ``s3://bucket/prefix``, a local folder, or (None) the default local folder
    ``$PREFECT_HOME/together-lora/answers``; ``namespace`` separates evaluations."""
    if uri == "memory":
        return MemoryAnswerStore()
    if uri and uri.startswith("s3://"):
        from prefect_together_lora.sources.s3 import make_s3_client, split_s3_uri

        bucket, prefix = split_s3_uri(uri, "The answer store")
        return S3AnswerStore(make_s3_client(), bucket, f"{prefix.strip('/')}/{namespace}")
    if uri:
        root = Path(uri).expanduser()
    else:
        home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
        root = home / "together-lora" / "answers"
    return LocalAnswerStore(root / f"{namespace}.jsonl")
