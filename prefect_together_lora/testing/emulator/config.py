"""Emulator settings: every behaviour a test may want to switch, changeable at run time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# Together's serverless LoRA base-model tables as published at different times (see
# reference/together-api.md §5.6). Kept as data so tests can switch between them.
BASE_MODEL_TABLES: dict[str, list[str]] = {
    "A": [
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference",
        "Qwen/Qwen2.5-14B-Instruct",
        "Qwen/Qwen2.5-72B-Instruct",
    ],
    "B": [
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference",
        "Qwen/Qwen2.5-72B-Instruct",
        "Qwen/Qwen3-235B-A22B-Instruct-2507-tput",
    ],
    "C": [
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        "Qwen/Qwen3-235B-A22B-Instruct-2507-tput",
    ],
}
BASE_MODEL_TABLES["all"] = sorted({m for table in BASE_MODEL_TABLES.values() for m in table})


class EndpointSpec(BaseModel):
    """A dedicated endpoint adapters can be attached to (``/v1/endpoints/{id}/adapters``)."""

    id: str
    name: str = Field(description="The endpoint's model name (left of ':' in model ids).")
    base_model: str
    lora: bool = Field(default=True, description="LoRA-enabled: accepts adapters.")
    max_adapters: int = Field(default=16, ge=1)


class EmulatorConfig(BaseModel):
    """How the emulated Together account behaves. All fields can be patched at run time through
    ``PATCH /_emulator/config``."""

    account: str = Field(default="devuser", description="Namespace of uploaded model names.")
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted keys; empty means any non-empty bearer key."
    )
    hf_endpoint: str | None = Field(default=None, description="Hub endpoint for Hub sources.")
    job_seconds: float = Field(default=1.0, ge=0, description="Duration of an upload job.")
    min_url_lifetime_s: float = Field(
        default=100 * 60,
        description="Presigned URLs must live at least this long (Together: 100 min).",
    )
    base_models: str = Field(default="all", description="Which base-model table: A, B, C or all.")
    duplicate_mode: Literal["error", "200"] = Field(
        default="error",
        description="'error': 400 envelope on a duplicate name; '200': HTTP 200, only message.",
    )
    job_status_alias: str | None = Field(
        default=None, description="Report this non-enum status (e.g. 'Processing') while running."
    )
    list_adapters: bool = Field(default=True, description="List completed adapters in GET /models.")
    dedicated_only: bool = Field(
        default=True,
        description="Uploaded v1 models answer 400 model_not_available 'non-serverless' (they "
        "need a dedicated endpoint), as Together does today; False restores the legacy "
        "serverless LoRA inference.",
    )
    cold_start_calls: int = Field(
        default=0, ge=0, description="First K calls to a new adapter fail."
    )
    cold_start_status: Literal[503, 404] = 503
    latency_ms: float = Field(default=0, ge=0, description="Added latency of each inference call.")
    rate_limit_rps: float | None = Field(
        default=None, gt=0, description="Token bucket refill per key and model; None = unlimited."
    )
    rate_limit_burst: int = Field(default=10, ge=1)
    context_length: int = Field(default=8192, ge=16)
    endpoints: list[EndpointSpec] = Field(
        default_factory=list, description="v1 dedicated endpoints adapters can be attached to."
    )
    # -- v2 (project-scoped API) -----------------------------------------------------------
    project_id: str = Field(default="proj_emulator0001", description="The keys' project.")
    project_slug: str = Field(
        default="acme-research", description="Prepended to v2 names: <slug>/<name>."
    )
    project_name: str = "Research"
    organization_id: str = "org_emulator01"
    organization_name: str = "Acme"
    org_keys: list[str] = Field(
        default_factory=list,
        description="Keys that whoami reports as organization keys (no project scope).",
    )
    wrong_project_status: Literal[403, 404] = Field(
        default=403, description="Answer to a path project the key does not belong to."
    )
    v2_error_shape: Literal["standard", "rpc"] = Field(
        default="standard",
        description="v2 error bodies: {'error': {...}} or the RPC {'code','message','details'}.",
    )
    v2_duplicate_status: Literal[400, 409] = Field(
        default=409, description="Status of 'model name already exists' on v2."
    )
    deploy_seconds: float = Field(default=1.0, ge=0, description="PROVISIONING → READY.")
    stop_seconds: float = Field(default=0.3, ge=0, description="STOPPING → STOPPED.")
    adapter_load_seconds: float = Field(
        default=0.5, ge=0, description="Attachment PENDING → LOADING → READY per cluster."
    )
    upload_error_restarts: int = Field(
        default=0, ge=0, description="Remote uploads go through ERROR this many times first."
    )
    max_restarts: int = Field(default=3, ge=0, description="maxRestarts of remote uploads.")
    deploy_never_ready: bool = Field(default=False, description="Deployments stay PROVISIONING.")
    deployment_fails: bool = Field(default=False, description="Deployments end FAILED.")
    adapter_load_fails: bool = Field(
        default=False, description="Attached adapters end FAILED with adapterValid=false."
    )
    adapter_model_form: Literal["name", "endpoint:name"] = Field(
        default="name",
        description="How inference names an attached adapter: '<slug>/<adapter>' or "
        "'<slug>/<endpoint>:<slug>/<adapter>' (Together's exact form is unverified).",
    )
    clusters: list[str] = Field(default_factory=lambda: ["us-east-2a"], min_length=1)
    pods_per_cluster: int = Field(default=2, ge=1)
