"""The emulated v2 catalog: supported base models with deployment profiles (adapter modes,
hardware), and the serving limits Together publishes per LoRA base (target modules, max rank,
max adapters) — fixture data, deliberately independent of the plugin's validation catalog so a
wrong entry there cannot pass its own tests here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

PLATFORM_PROJECT = "proj_platform0001"
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


def short_id(prefix: str, *parts: str, n: int = 12) -> str:
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:n]
    return f"{prefix}{digest}"


@dataclass(frozen=True)
class Dims:
    """What a LoRA tensor's non-rank dimension must be, per projection."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    def in_out(self, proj: str) -> tuple[int, int] | None:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden, q),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (q, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }.get(proj)


@dataclass(frozen=True)
class BaseSpec:
    name: str
    aliases: tuple[str, ...]
    adapter_modes: tuple[str, ...]  # one deployment profile per mode
    target_modules: tuple[str, ...] = ALL_LINEAR
    max_rank: int = 64
    max_adapters: int = 16
    gpu_type: str = "H100-80GB"
    gpu_count: int = 1
    dims: Dims | None = None
    context_length: int = 131072
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_id(self) -> str:
        return short_id("ml_", self.name)

    @property
    def arch_id(self) -> str:
        return short_id("arch_", self.name)

    @property
    def revision_id(self) -> str:
        return short_id("rv_", self.name, "certified")

    @property
    def weights_path(self) -> str:
        return f"projects/{PLATFORM_PROJECT}/models/{self.weights_id}"

    def config_id(self, mode: str) -> str:
        return short_id("cr_", self.name, mode)

    def matches(self, name: str | None) -> bool:
        return bool(name) and name in (self.name, *self.aliases)


BASES: tuple[BaseSpec, ...] = (
    BaseSpec(
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("ADAPTER_MODE_DYNAMIC", "ADAPTER_MODE_DISABLED"),
        dims=Dims(4096, 14336, 32, 32, 8, 128),
    ),
    BaseSpec(
        "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference",
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"),
        ("ADAPTER_MODE_FIXED",),
        gpu_count=4,
        dims=Dims(8192, 28672, 80, 64, 8, 128),
    ),
    BaseSpec(
        "Qwen/Qwen2.5-14B-Instruct",
        ("Qwen/Qwen2.5-14B-Instruct-Turbo",),
        ("ADAPTER_MODE_DYNAMIC",),
        max_adapters=5,
        dims=Dims(5120, 13824, 48, 40, 8, 128),
    ),
    BaseSpec(
        "Qwen/Qwen2.5-72B-Instruct",
        ("Qwen/Qwen2.5-72B-Instruct-Turbo",),
        ("ADAPTER_MODE_DYNAMIC",),
        gpu_count=4,
        max_adapters=5,
        dims=Dims(8192, 29568, 80, 64, 8, 128),
    ),
    BaseSpec(
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        ("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",),
        ("ADAPTER_MODE_DYNAMIC",),
        target_modules=ATTENTION,
        gpu_count=8,
    ),
    # a base Together serves dedicated but not with LoRA: attaching must be refused
    BaseSpec(
        "Qwen/Qwen3-235B-A22B-Instruct-2507-tput",
        ("Qwen/Qwen3-235B-A22B-Instruct-2507",),
        ("ADAPTER_MODE_DISABLED",),
        gpu_count=8,
    ),
)


def base_by_weights(weights_id: str | None) -> BaseSpec | None:
    return next((b for b in BASES if b.weights_id == weights_id), None)


def base_by_config(config_id: str | None) -> tuple[BaseSpec, str] | None:
    for base in BASES:
        for mode in base.adapter_modes:
            if base.config_id(mode) == config_id:
                return base, mode
    return None


def supported_model(base: BaseSpec) -> dict[str, Any]:
    """The wire form of ``GET /v2/supported-models`` items (SDK 3.x ``SupportedModel``)."""
    profiles = []
    for mode in base.adapter_modes:
        kind = mode.removeprefix("ADAPTER_MODE_").lower()
        profiles.append(
            {
                "profileId": f"{base.name.split('/')[-1].lower()}-{kind}",
                "config": f"projects/{PLATFORM_PROJECT}/configs/{base.config_id(mode)}",
                "certifiedConfigRevisionId": short_id("crv_", base.name, mode),
                "model": f"{base.weights_path}/revisions/{base.revision_id}",
                "certifiedModelRevisionId": base.revision_id,
                "modelName": base.name,
                "gpuType": base.gpu_type,
                "gpuCount": base.gpu_count,
                "parallelism": f"tp{base.gpu_count}",
                "quantization": "BF16",
                "performanceBenchmarks": {
                    "decodingSpeedTps": 120.0,
                    "maxContextLength": str(base.context_length),
                    "timeToFirstTokenMs": 180,
                },
                "adapterMode": mode,
            }
        )
    org, _, short = base.name.partition("/")
    return {
        "id": base.arch_id,
        "name": base.name,
        "displayName": short,
        "displayType": "chat",
        "publisher": org,
        "baseModel": base.weights_path,
        "baseModelId": base.weights_id,
        "capabilities": ["CAPABILITY_CHAT"],
        "inputModalities": ["MODALITY_TEXT"],
        "outputModalities": ["MODALITY_TEXT"],
        "products": ["PRODUCT_DEDICATED", "PRODUCT_FINE_TUNING"],
        "status": "SUPPORTED_MODEL_STATUS_SUPPORTED",
        "createdAt": "2026-01-05T00:00:00Z",
        "updatedAt": "2026-08-01T00:00:00Z",
        "deploymentProfiles": profiles,
        "contextLength": str(base.context_length),
        "tags": ["lora"] if any(m != "ADAPTER_MODE_DISABLED" for m in base.adapter_modes) else [],
    }


def config_doc(base: BaseSpec, mode: str, project_id: str) -> dict[str, Any]:
    """The wire form of ``GET /v2/projects/{p}/configs/{cr}`` (SDK 3.x ``Config``)."""
    return {
        "id": base.config_id(mode),
        "projectId": project_id,
        "referenceModel": base.weights_path,
        "referenceModelId": base.weights_id,
        "selectors": [
            {"key": "adapter_mode", "value": mode.removeprefix("ADAPTER_MODE_").lower()},
            {"key": "gpu_type", "value": base.gpu_type},
        ],
        "certifications": [
            {
                "certificationType": "CERTIFICATION_TYPE_CERTIFIED",
                "certifiedAt": "2026-06-01T00:00:00Z",
                "certifiedBy": "together",
                "model": base.weights_path,
                "modelRevisionId": base.revision_id,
                "target": "CERTIFICATION_TARGET_MRE",
            }
        ],
    }
