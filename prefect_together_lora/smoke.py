"""A few real calls on the uploaded model: does it answer, how fast, how much?"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, Field

from prefect_together_lora.client import TogetherClient
from prefect_together_lora.errors import ModelNotAvailable, ServiceUnavailable, TogetherError
from prefect_together_lora.options import SmokeOptions


class SmokeSample(BaseModel):
    prompt: str
    output: str = ""
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.output.strip())


class SmokeReport(BaseModel):
    model: str
    mode: str
    samples: list[SmokeSample] = Field(default_factory=list)
    cold_start_retries: int = 0
    ready_after_s: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.samples) and all(s.ok for s in self.samples)

    @property
    def failures(self) -> list[SmokeSample]:
        return [s for s in self.samples if not s.ok]


def run_smoke(
    client: TogetherClient,
    model: str,
    options: SmokeOptions | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_wait: Callable[[TogetherError], None] | None = None,
) -> SmokeReport:
    """Send each prompt once the model is ready; cold-start answers (503, 404
    ``model_not_available``) are retried until ``ready_timeout_s``."""
    options = options or SmokeOptions()
    report = SmokeReport(model=model, mode=options.mode)
    start = clock()
    for prompt in options.prompts:
        sample = SmokeSample(prompt=prompt)
        while True:
            began = clock()
            try:
                if options.mode == "chat":
                    answer = client.chat(
                        model,
                        [{"role": "user", "content": prompt}],
                        max_tokens=options.max_tokens,
                        temperature=options.temperature,
                    )
                else:
                    answer = client.complete(
                        model,
                        prompt,
                        max_tokens=options.max_tokens,  # type: ignore[assignment]
                        temperature=options.temperature,
                    )
            except (ServiceUnavailable, ModelNotAvailable) as exc:
                if exc.status_code == 400:  # "non-serverless": waiting will not help
                    sample.error = (
                        f"{exc.message} The model needs a dedicated endpoint; "
                        "deploy one, then smoke-test it."
                    )
                    break
                if clock() - start >= options.ready_timeout_s:
                    sample.error = f"not ready after {options.ready_timeout_s:.0f}s: {exc.message}"
                    break
                report.cold_start_retries += 1
                if on_wait is not None:
                    on_wait(exc)
                sleep(options.retry_interval_s)
                continue
            except TogetherError as exc:
                sample.error = exc.message
                break
            sample.latency_s = round(clock() - began, 4)
            sample.output = answer.text
            sample.finish_reason = answer.finish_reason
            if answer.usage is not None:
                sample.prompt_tokens = answer.usage.prompt_tokens
                sample.completion_tokens = answer.usage.completion_tokens
            if not report.ready_after_s:
                report.ready_after_s = round(clock() - start, 3)
            break
        report.samples.append(sample)
    return report
