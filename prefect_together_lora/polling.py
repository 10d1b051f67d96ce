"""Waiting on Together: one polling loop (growing intervals, a deadline, the brief 404 right
after a create tolerated) used for v1 jobs, v2 uploads and v2 serving alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from prefect_together_lora.client import TogetherClient
from prefect_together_lora.errors import (
    JobFailed,
    JobTimedOut,
    NotFoundError,
    RateLimitError,
    ServerError,
    TogetherConnectionError,
)
from prefect_together_lora.options import JobOptions
from prefect_together_lora.schemas import Job, JobStatus, StatusUpdate
from prefect_together_lora.together.backend import (
    AdapterHandle,
    Backend,
    ImportEvent,
    ImportPoll,
    ImportState,
)

_T = TypeVar("_T")
Sleep = Callable[[float], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Pace:
    """Poll intervals and limits."""

    initial_s: float = 2.0
    factor: float = 1.5
    max_s: float = 30.0
    max_wait_s: float = 3600.0
    not_found_grace_s: float = 60.0
    # poll every this fraction of the time waited (a job that took T is noticed within
    # max(initial_s, fraction * T)); None: intervals grow by ``factor``
    fraction: float | None = None

    @classmethod
    def of_job(cls, options: JobOptions) -> Pace:
        return cls(
            options.poll_initial_s,
            options.poll_factor,
            options.poll_max_s,
            options.max_wait_s,
            options.not_found_grace_s,
            options.poll_fraction,
        )

    def next_interval(self, interval: float, waited: float) -> float:
        if self.fraction is not None:
            return min(self.max_s, max(self.initial_s, self.fraction * waited))
        return min(self.max_s, interval * self.factor)


def poll_until(
    fetch: Callable[[], _T],
    done: Callable[[_T], bool],
    pace: Pace,
    timed_out: Callable[[float, _T | None], Exception],
    *,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> _T:
    """Call ``fetch`` until ``done`` says so (returns that value); a 404 within the grace is
    "not there yet"; past ``max_wait_s`` raises ``timed_out(waited, last value)``."""
    start = clock()
    interval = pace.initial_s
    last: _T | None = None
    while True:
        try:
            last = fetch()
        except NotFoundError:
            if clock() - start > pace.not_found_grace_s:
                raise
        except (ServerError, RateLimitError, TogetherConnectionError):
            # a blip on the status route (its own retries exhausted) says nothing about the
            # job: keep polling until the deadline, which then names the last known status
            pass
        else:
            if done(last):
                return last
        waited = clock() - start
        if waited >= pace.max_wait_s:
            raise timed_out(waited, last)
        sleep(min(interval, max(0.0, pace.max_wait_s - waited)))
        interval = pace.next_interval(interval, clock() - start)


OnPoll = Callable[[ImportPoll], None]


def wait_for_import(
    backend: Backend,
    handle: AdapterHandle,
    options: JobOptions | None = None,
    *,
    on_poll: OnPoll | None = None,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> list[ImportEvent]:
    """Follow an import until its weights are in (returns the whole timeline) or it failed
    (:class:`JobFailed` with Together's reason, timeline and validation findings); past
    ``max_wait_s`` raises :class:`JobTimedOut`. ``on_poll`` sees every poll, events once each."""
    timeline: list[ImportEvent] = []
    cursor: list[str | None] = [None]

    def fetch() -> ImportPoll:
        poll = backend.poll_import(handle, cursor[0])
        cursor[0] = poll.cursor
        timeline.extend(poll.events)
        if on_poll is not None:
            on_poll(poll)
        return poll

    def timed_out(waited: float, last: ImportPoll | None) -> Exception:
        return JobTimedOut(handle.job_id, waited, last.status.raw if last else "unknown")

    final = poll_until(
        fetch,
        lambda p: p.status.state.terminal,
        Pace.of_job(options or JobOptions()),
        timed_out,
        sleep=sleep,
        clock=clock,
    )
    if final.status.state == ImportState.FAILED:
        reason = final.status.message or next(
            (e.message for e in reversed(timeline) if e.message), "no reason given"
        )
        raise JobFailed(
            handle.job_id,
            reason,
            timeline,
            final.status.findings,
            model_name=handle.model_name,
            model_id=handle.model_id,
        )
    return timeline


OnUpdate = Callable[[Job, list[StatusUpdate]], None]


def wait_for_job(
    client: TogetherClient,
    job_id: str,
    options: JobOptions | None = None,
    *,
    on_update: OnUpdate | None = None,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> Job:
    """The v1 job itself, polled until ``Complete`` (returned) or ``Failed`` (raises
    :class:`JobFailed`); ``on_update`` gets each status update once."""
    seen = [0]

    def fetch() -> Job:
        job = client.get_job(job_id)
        fresh = job.status_updates[seen[0] :]
        seen[0] = len(job.status_updates)
        if on_update is not None and (fresh or not seen[0]):
            on_update(job, fresh)
        return job

    def timed_out(waited: float, last: Job | None) -> Exception:
        return JobTimedOut(job_id, waited, last.status.value if last else "unknown")

    job = poll_until(
        fetch,
        lambda j: j.is_terminal,
        Pace.of_job(options or JobOptions()),
        timed_out,
        sleep=sleep,
        clock=clock,
    )
    if job.status == JobStatus.FAILED:
        raise JobFailed(job.job_id, failure_reason(job), timeline_of(job.status_updates))
    return job


def timeline_of(updates: list[StatusUpdate]) -> list[ImportEvent]:
    """v1 status updates as timeline events."""
    return [
        ImportEvent(
            at=u.timestamp,
            level="error" if u.status == JobStatus.FAILED else "info",
            kind=f"job.{u.status.value.lower()}",
            message=u.message,
            status=u.status.value,
        )
        for u in updates
    ]


def failure_reason(job: Job) -> str:
    messages = [u.message for u in job.status_updates if u.message]
    return messages[-1] if messages else "no reason given"


def progress_of(state: ImportState) -> float:
    """A rough 0-100 progress for the UI."""
    return {
        ImportState.PENDING: 10.0,
        ImportState.RUNNING: 50.0,
        ImportState.SUCCEEDED: 100.0,
        ImportState.FAILED: 100.0,
    }[state]
