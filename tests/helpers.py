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


def user_deployment(
    client: Any, backend: Any, base: str, mode: str, name: str, max_replicas: int = 1
) -> tuple[Any, Any]:
    """A user's own v2 endpoint + deployment of ``base`` (profile of adapter ``mode``), live in
    the traffic split: what serving mode 'attach' attaches to."""
    from prefect_together_lora.together.v2_schemas import TrafficEntry

    profile = next(
        p
        for model in backend._catalog(base)
        for p in model.deployment_profiles
        if p.adapter_mode == mode
    )
    endpoint = client.create_endpoint(name)
    deployment = client.create_deployment(
        endpoint.id,
        "main",
        model=profile.model,
        config=profile.config,
        min_replicas=1,
        max_replicas=max_replicas,
    )
    client.set_traffic(
        endpoint.id, lambda split: [*split, TrafficEntry(deployment_id=deployment.id, weight=100)]
    )
    return endpoint, deployment


def secret_hits(needles: list[str], prefect_home: Path, database: Path, log_text: str) -> list[str]:
    """Where any of ``needles`` (keys, tokens, signatures) appears: files under Prefect's home
    and the server's folder, every row of the server's SQLite database, the captured logs."""
    import sqlite3

    hits = [f"log: {n}" for n in needles if n in log_text]
    for folder in (prefect_home, database.parent):
        for file in folder.rglob("*"):
            if file.is_file():
                data = file.read_bytes()
                hits += [f"{file}: {n}" for n in needles if n.encode() in data]
    with sqlite3.connect(database) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                text = " ".join(str(c) for c in row)
                hits += [f"{table}: {n}" for n in needles if n in text]
    return hits
