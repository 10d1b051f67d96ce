"""An LLM judge: a Together model grades each answer against the expected one with a rubric.
Its score is parsed robustly (``Score: 7/10``, ``8``, ``**Rating**: 4 out of 5``, ...)."""

from __future__ import annotations

import re

DEFAULT_RUBRIC = (
    "You grade an assistant's answer against a reference answer. Judge correctness and "
    "completeness with respect to the reference; ignore style. Reply with one line "
    "'Score: N' where N is an integer from 0 (wrong) to 10 (fully correct)."
)

_SCORE = re.compile(
    r"(?:score|rating|grade)\W{0,5}(\d+(?:\.\d+)?)\s*(?:/|out of)?\s*(\d+(?:\.\d+)?)?",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:/|out of)?\s*(\d+(?:\.\d+)?)?")


def judge_messages(
    rubric: str, prompt: str, expected: list[str], answer: str
) -> list[dict[str, str]]:
    reference = "\n".join(f"- {e}" for e in expected)
    return [
        {"role": "system", "content": rubric},
        {
            "role": "user",
            "content": f"Question:\n{prompt}\n\nReference answer(s):\n{reference}"
            f"\n\nAssistant's answer:\n{answer}\n\nScore:",
        },
    ]


def parse_judge_score(text: str, default_scale: float = 10.0) -> float | None:
    """A score in [0, 1], or None when the judge's reply holds no usable number."""
    match = _SCORE.search(text) or _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    scale = float(match.group(2)) if match.group(2) else default_scale
    if scale <= 0 or value < 0 or value > scale:
        return None
    return value / scale
