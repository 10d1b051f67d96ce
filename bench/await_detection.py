"""Benchmark: how late ``await_job`` notices that an import finished.

Jobs of 5 s to 10 min, simulated: a backend whose import completes at a given time on a fake
clock that each poll's sleep advances, so minutes of polling take milliseconds and the lag is
exact. Uses the default :class:`JobOptions` (what a flow run polls with).

Target: completion noticed within max(1 s, 10 % of the job's duration), at every duration.

    python bench/await_detection.py [--durations 5,20,60,300,600]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect_together_lora.options import JobOptions
from prefect_together_lora.polling import wait_for_import
from prefect_together_lora.together.backend import (
    AdapterHandle,
    Backend,
    ImportPoll,
    ImportState,
    ImportStatus,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FinishesAt(Backend):
    """An import that runs until ``done_at`` on the clock, then succeeds."""

    api = "v2"

    def __init__(self, clock: Clock, done_at: float) -> None:
        self.clock, self.done_at, self.polls = clock, done_at, 0

    def poll_import(self, handle: AdapterHandle, cursor: str | None = None) -> ImportPoll:
        self.polls += 1
        done = self.clock() >= self.done_at
        state = ImportState.SUCCEEDED if done else ImportState.RUNNING
        return ImportPoll(status=ImportStatus(state=state, raw=state.value))

    # the rest of the interface is not used by wait_for_import
    def preflight(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def resolve_base_model(self, base_model: str) -> str:  # pragma: no cover
        raise NotImplementedError

    def import_adapter(self, spec: object) -> AdapterHandle:  # type: ignore[override]
        raise NotImplementedError  # pragma: no cover

    def serve(self, handle: object, options: object) -> object:  # type: ignore[override]
        raise NotImplementedError  # pragma: no cover

    def teardown(self, *args: object, **kwargs: object) -> list:  # type: ignore[override]
        raise NotImplementedError  # pragma: no cover

    def published(self, name: str) -> str | None:  # pragma: no cover
        raise NotImplementedError

    @property
    def inference_url(self) -> str:  # pragma: no cover
        return ""


def measure(duration: float, options: JobOptions) -> tuple[float, int]:
    clock = Clock()
    backend = FinishesAt(clock, duration)
    handle = AdapterHandle(api="v2", name="b", model_name="b", job_id="job_b", base_model="x")
    wait_for_import(backend, handle, options, sleep=clock.sleep, clock=clock)
    return clock() - duration, backend.polls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", default="5,10,20,45,60,120,300,600")
    args = parser.parse_args()
    options = JobOptions()
    rows, worst = [], 0.0
    print(
        f"{'job (s)':>8} {'polls':>6} {'noticed late (s)':>17} {'max(1s,10%)':>12} "
        f"{'late/target':>12}  ok"
    )
    for duration in (float(d) for d in args.durations.split(",")):
        # the worst case over where the completion falls between two polls: 25 jobs
        # spread over one poll interval past the nominal duration, each held to its own target
        window = max(options.poll_initial_s, 0.1 * duration)
        actual = [duration + window * i / 25 for i in range(25)]
        runs = [(measure(d, options), max(1.0, 0.1 * d)) for d in actual]
        lag = max(late for (late, _), _ in runs)
        polls = max(n for (_, n), _ in runs)
        ratio = max(late / target for (late, _), target in runs)
        target = max(1.0, 0.1 * duration)
        ok = ratio <= 1 + 1e-9
        worst = max(worst, ratio)
        rows.append(ok)
        print(
            f"{duration:>8.0f} {polls:>6} {lag:>17.2f} {target:>12.1f} {ratio:>12.2f}  "
            f"{'yes' if ok else 'NO'}"
        )
    print(
        f"await_detection: jobs={len(rows)} within_target={sum(rows)} "
        f"worst_lag_over_target={worst:.2f} poll_initial_s={options.poll_initial_s} "
        f"poll_fraction={options.poll_fraction}"
    )
    return 0 if all(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
