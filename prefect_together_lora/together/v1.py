"""The v1 backend: ``POST /v1/models`` → ``GET /v1/jobs/{id}`` → inference on the control plane.

For accounts that still have it (Together retires v1 at the end of 2026). Uploaded adapters are
called serverless as ``<user>/<name>``; accounts without serverless LoRA answer 400
"non-serverless", which smoke reports with the fix (use the v2 backend). v1 has no delete: a
v1 model stays, whatever the teardown mode.
"""

from __future__ import annotations

from prefect_together_lora.client import TogetherClient
from prefect_together_lora.polling import failure_reason, timeline_of
from prefect_together_lora.schemas import Job, JobStatus
from prefect_together_lora.together.backend import (
    AdapterHandle,
    AdapterSpec,
    Backend,
    ImportPoll,
    ImportState,
    ImportStatus,
    Resource,
    ServingOptions,
    ServingReport,
    TeardownMode,
)

_STATES = {
    JobStatus.QUEUED: ImportState.PENDING,
    JobStatus.RUNNING: ImportState.RUNNING,
    JobStatus.COMPLETE: ImportState.SUCCEEDED,
    JobStatus.FAILED: ImportState.FAILED,
}


def published_job(jobs: list[Job], model_name: str) -> Job | None:
    """The v1 job that holds ``model_name`` (complete, in progress or failed), if any."""
    for job in jobs:
        name = job.model_name or ""
        if name == model_name or name.rsplit("/", 1)[-1] == model_name.rsplit("/", 1)[-1]:
            return job
    return None


def skip_reason(job: Job) -> str:
    if job.status == JobStatus.COMPLETE:
        return f"already published (job {job.job_id})"
    if job.status == JobStatus.FAILED:
        return (
            f"an earlier upload failed (job {job.job_id}); fix the adapter and it gets a new name"
        )
    return f"upload in progress (job {job.job_id}, {job.status.value})"


class V1Backend(Backend):
    """Together's v1 upload API behind the backend interface."""

    api = "v1"

    def __init__(self, client: TogetherClient) -> None:
        self.client = client

    def close(self) -> None:
        self.client.close()

    @property
    def inference_url(self) -> str:
        return self.client.base_url

    def preflight(self) -> str:
        models = self.client.list_models()
        return f"v1 account at {self.client.base_url} ({len(models)} models listed)"

    def resolve_base_model(self, base_model: str) -> str:
        if not base_model.strip():
            raise ValueError("base_model is empty")
        return base_model.strip()

    def import_adapter(self, spec: AdapterSpec) -> AdapterHandle:
        job = self.client.upload_adapter(
            spec.name,
            spec.source_url,
            spec.base_model,
            description=spec.description,
            hf_token=spec.hf_token,
        )
        return AdapterHandle(
            api="v1",
            name=spec.name,
            model_name=job.model_name,
            job_id=job.job_id,
            base_model=spec.base_model,
            model_id=job.model_id,
            reused=job.reconciled,
        )

    def poll_import(self, handle: AdapterHandle, cursor: str | None = None) -> ImportPoll:
        job = self.client.get_job(handle.job_id)
        seen = int(cursor or 0)
        state = _STATES.get(job.status, ImportState.RUNNING)  # unknown: not terminal
        return ImportPoll(
            status=ImportStatus(
                state=state,
                raw=job.status.value,
                message=failure_reason(job) if state == ImportState.FAILED else None,
            ),
            events=timeline_of(job.status_updates[seen:]),
            cursor=str(len(job.status_updates)),
        )

    def serve(self, handle: AdapterHandle, options: ServingOptions) -> ServingReport:
        if options.mode == "none":
            return ServingReport(mode="none", inference_url=self.inference_url)
        notes = []
        if options.mode == "attach" or options.merge:
            notes.append(
                "v1 serves uploaded adapters serverless only here; attach/merge need the v2 "
                "backend (api='v2')."
            )
        return ServingReport(
            mode="serverless",
            inference_url=self.inference_url,
            adapter_model=options.adapter_model_string or handle.model_name,
            base_model=options.base_model_string or handle.base_model,
            state="serverless",
            notes=notes,
        )

    def teardown(
        self,
        handle: AdapterHandle,
        resources: list[Resource],
        mode: TeardownMode,
        *,
        keep_model: bool = False,
    ) -> list[Resource]:
        # v1 has no DELETE /models and nothing it creates bills per replica
        return [r.model_copy(update={"state": "kept"}) for r in resources]

    def published(self, name: str) -> str | None:
        job = published_job(self.client.list_jobs(), name)
        return None if job is None else skip_reason(job)
