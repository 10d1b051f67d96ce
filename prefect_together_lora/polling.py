"""Wait for a Together job: poll with growing intervals, report each new status update once,
tolerate the brief 404 right after submit, and end with the job or a precise error."""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect_together_lora.client import TogetherClient
from prefect_together_lora.errors import JobFailed, JobTimedOut, NotFoundError
from prefect_together_lora.options import JobOptions
from prefect_together_lora.schemas import Job, JobStatus, StatusUpdate

OnUpdate = Callable[[Job, list[StatusUpdate]], None]


def wait_for_job(
    client: TogetherClient,
    job_id: str,
    options: JobOptions | None = None,
    *,
    on_update: OnUpdate | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Job:
    """Poll ``GET /v1/jobs/{id}`` until ``Complete`` (returns it) or ``Failed`` (raises
    :class:`JobFailed`); past ``max_wait_s`` raises :class:`JobTimedOut`. ``on_update`` gets the
    job and the status updates not seen before, once each."""
    options = options or JobOptions()
    start = clock()
    interval = options.poll_initial_s
    seen = 0
    last_status = "unknown"
    while True:
        try:
            job = client.get_job(job_id)
        except NotFoundError:
            if clock() - start > options.not_found_grace_s:
                raise
            job = None
        if job is not None:
            last_status = job.status.value
            fresh = job.status_updates[seen:]
            seen = len(job.status_updates)
            if on_update is not None and (fresh or not seen):
                on_update(job, fresh)
            if job.status == JobStatus.COMPLETE:
                return job
            if job.status == JobStatus.FAILED:
                raise JobFailed(job)
        waited = clock() - start
        if waited >= options.max_wait_s:
            raise JobTimedOut(job_id, waited, last_status)
        sleep(min(interval, max(0.0, options.max_wait_s - waited)))
        interval = min(options.poll_max_s, interval * options.poll_factor)


def progress_of(job: Job) -> float:
    """A rough 0-100 progress for the UI from the job's status."""
    return {
        JobStatus.QUEUED: 10.0,
        JobStatus.RUNNING: 50.0,
        JobStatus.COMPLETE: 100.0,
        JobStatus.FAILED: 100.0,
    }.get(job.status, 50.0)
