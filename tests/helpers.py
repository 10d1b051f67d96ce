"""Small helpers shared by the tests (presigning with the bare SDK, waiting for jobs)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

BASE_8B = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


def raw_presign(s3: Any, bucket: str, key: str, expires: int = 6 * 3600) -> str:
    """A SigV4 presigned GET made with boto3 directly (independent of the plugin's presign)."""
    signer = boto3.client(
        "s3",
        endpoint_url=s3.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing-access-key",
        aws_secret_access_key="testing-secret-key",
        config=Config(signature_version="s3v4"),
    )
    return signer.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
    )


def put_file(s3: Any, bucket: str, key: str, path: Path) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def wait_job(client: Any, job_id: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job.is_terminal:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def read_artifacts(flow_state: Any) -> dict[str, Any]:
    """The keyed artifacts of a flow run, read back through the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_state.state_details.flow_run_id])
                )
            )
        return {a.key: a for a in arts if a.key}

    return asyncio.run(read())
