"""Deterministic text generation, scripted answers and the per-key rate limiter."""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from dataclasses import dataclass

_WORDS = [
    "the",
    "adapter",
    "model",
    "answers",
    "questions",
    "about",
    "support",
    "tickets",
    "with",
    "short",
    "clear",
    "steps",
    "and",
    "helpful",
    "context",
    "drawn",
    "from",
    "training",
    "data",
    "so",
    "users",
    "reach",
    "a",
    "resolution",
    "quickly",
    "while",
    "the",
    "base",
    "model",
    "tends",
    "to",
    "give",
    "longer",
    "general",
    "replies",
    "that",
    "mention",
    "settings",
    "accounts",
    "passwords",
    "billing",
    "reports",
    "and",
    "other",
    "topics",
]


@dataclass
class Generation:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seed: int


def count_tokens(text: str) -> int:
    return max(1, len(text.split())) if text else 0


class Scripts:
    """Scripted answers per (model, prompt): lets a test make an adapter differ from its base."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], str] = {}

    def add(self, model: str, prompt: str, response: str) -> None:
        with self._lock:
            self._answers[(model, prompt.strip())] = response

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()

    def lookup(self, model: str, prompt: str) -> str | None:
        with self._lock:
            return self._answers.get((model, prompt.strip()))

    def __len__(self) -> int:
        return len(self._answers)


def generate(
    *,
    model: str,
    prompt: str,
    seed: int | None,
    temperature: float | None,
    max_tokens: int | None,
    stop: list[str],
    scripted: str | None,
    default_finish: str,
    variant: int = 0,
) -> Generation:
    """The same (model, prompt, seed, temperature) always gives the same answer."""
    key = f"{model}|{prompt}|{seed}|{temperature}|{variant}".encode()
    digest = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
    used_seed = seed if seed is not None else digest % (2**53)
    if scripted is not None:
        text = scripted
    else:
        rng = random.Random(digest)
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 40))]
        text = " ".join(words).capitalize() + "."
    finish = default_finish
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    if cut >= 0:
        text, finish = text[:cut], "stop"
    tokens = text.split(" ") if text else []
    if max_tokens is not None and len(tokens) > max_tokens:
        text, finish = " ".join(tokens[:max_tokens]), "length"
    return Generation(text, finish, count_tokens(prompt), count_tokens(text), used_seed)


class RateLimiter:
    """A token bucket per (api key, model): ``rps`` refill, ``burst`` capacity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def take(
        self, key: str, model: str, rps: float | None, burst: int
    ) -> tuple[bool, float, float]:
        """(allowed, tokens left, seconds until one token is available)."""
        if rps is None:
            return True, float(burst), 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get((key, model), (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rps)
            if tokens >= 1.0:
                self._buckets[(key, model)] = (tokens - 1.0, now)
                return True, tokens - 1.0, 0.0
            self._buckets[(key, model)] = (tokens, now)
            return False, tokens, (1.0 - tokens) / rps


def retry_after_headers(wait_s: float) -> dict[str, str]:
    return {
        "retry-after": str(max(1, math.ceil(wait_s))),
        "retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
        "x-ratelimit-reset": f"{wait_s:.3f}",
    }
