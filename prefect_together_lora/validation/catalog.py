"""The base models Together serves LoRA adapters on, with the dimensions shapes are checked
against. Data, not code: Together's list changes, so users can replace or extend it with a
JSON file or a Prefect Variable holding the same structure as ``catalog.json``."""

from __future__ import annotations

import json
import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
DEFAULT_TARGET_MODULES = ATTENTION + MLP


class MoeSpec(BaseModel):
    layout: str = Field(description="'llama4' (interleaved dense/MoE layers) or 'qwen3' (all MoE).")
    interleave_moe_layer_step: int = 1
    dense_intermediate_size: int | None = None
    expert_intermediate_size: int
    num_experts: int


class BaseModelSpec(BaseModel):
    """One supported base model: its Together id, aliases and the dimensions LoRA shapes use."""

    id: str
    display_name: str
    aliases: list[str] = Field(default_factory=list)
    architecture: str
    quantization: str = "BF16"
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tensor_prefix: str = Field(default="model.", description="Path before 'layers.N.' in keys.")
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    max_rank: int | None = None
    moe: MoeSpec | None = None

    def is_moe_layer(self, layer: int) -> bool:
        if self.moe is None:
            return False
        if self.moe.layout == "llama4":
            return (layer + 1) % self.moe.interleave_moe_layer_step == 0
        return True

    def module_dims(self, module_path: str, layer: int) -> tuple[int, int] | None:
        """(in_features, out_features) of ``module_path`` (e.g. ``self_attn.q_proj``) at
        ``layer``, or None when the base has no such LoRA-able module there."""
        h, q_out, kv_out = (
            self.hidden_size,
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        )
        attention = {
            "self_attn.q_proj": (h, q_out),
            "self_attn.k_proj": (h, kv_out),
            "self_attn.v_proj": (h, kv_out),
            "self_attn.o_proj": (q_out, h),
        }
        if module_path in attention:
            return attention[module_path]
        proj = module_path.rsplit(".", 1)[-1]
        if self.moe is None:
            inter = self.intermediate_size
            return _mlp(f"mlp.{proj}", module_path, h, inter)
        if self.moe.layout == "llama4":
            if self.is_moe_layer(layer):
                return _mlp(
                    f"feed_forward.shared_expert.{proj}",
                    module_path,
                    h,
                    self.moe.expert_intermediate_size,
                )
            return _mlp(
                f"feed_forward.{proj}",
                module_path,
                h,
                self.moe.dense_intermediate_size or self.intermediate_size,
            )
        match = re.fullmatch(r"mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)", module_path)
        if match and int(match.group(1)) < self.moe.num_experts:
            return _mlp(
                f"mlp.experts.{match.group(1)}.{proj}",
                module_path,
                h,
                self.moe.expert_intermediate_size,
            )
        return None

    def module_paths(
        self, layer: int, modules: tuple[str, ...] = DEFAULT_TARGET_MODULES, experts: int = 1
    ) -> list[str]:
        """The module paths a LoRA on ``modules`` has at ``layer`` (for generating adapters)."""
        paths = [f"self_attn.{m}" for m in modules if m in ATTENTION]
        mlp = [m for m in modules if m in MLP]
        if self.moe is None:
            paths += [f"mlp.{m}" for m in mlp]
        elif self.moe.layout == "llama4":
            block = "feed_forward.shared_expert" if self.is_moe_layer(layer) else "feed_forward"
            paths += [f"{block}.{m}" for m in mlp]
        else:
            paths += [f"mlp.experts.{e}.{m}" for e in range(experts) for m in mlp]
        return paths


def _mlp(expected: str, module_path: str, hidden: int, inter: int) -> tuple[int, int] | None:
    if module_path != expected:
        return None
    return (inter, hidden) if module_path.endswith("down_proj") else (hidden, inter)


def normalize_model_id(name: str) -> str:
    return name.strip().lower().removesuffix("-reference")


class Catalog(BaseModel):
    version: str
    default_max_rank: int = 64
    models: list[BaseModelSpec]

    @cached_property
    def _index(self) -> dict[str, BaseModelSpec]:
        index: dict[str, BaseModelSpec] = {}
        for spec in self.models:
            for name in (spec.id, *spec.aliases):
                index.setdefault(normalize_model_id(name), spec)
        return index

    def find(self, name: str | None) -> BaseModelSpec | None:
        """The spec for a Together id or any alias (case, ``-Reference`` and org insensitive)."""
        if not name:
            return None
        key = normalize_model_id(name)
        if key in self._index:
            return self._index[key]
        bare = key.rsplit("/", 1)[-1]
        matches = {s.id for k, s in self._index.items() if k.rsplit("/", 1)[-1] == bare}
        return self.get(matches.pop()) if len(matches) == 1 else None

    def get(self, model_id: str) -> BaseModelSpec | None:
        return next((s for s in self.models if s.id == model_id), None)

    def max_rank(self, spec: BaseModelSpec) -> int:
        return spec.max_rank or self.default_max_rank

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.models]

    def merged(self, other: dict[str, Any]) -> Catalog:
        """This catalog extended by ``other`` (same structure; its models replace same ids)."""
        extra = Catalog.model_validate({"version": self.version, **other})
        ids = {s.id for s in extra.models}
        return Catalog(
            version=extra.version if "version" in other else self.version,
            default_max_rank=other.get("default_max_rank", self.default_max_rank),
            models=[s for s in self.models if s.id not in ids] + extra.models,
        )


def default_catalog() -> Catalog:
    text = resources.files("prefect_together_lora.validation").joinpath("catalog.json").read_text()
    return Catalog.model_validate(json.loads(text))


def load_catalog(
    path: str | Path | None = None, *, replace: bool = False, variable: str | None = None
) -> Catalog:
    """The built-in catalog, extended (or replaced, ``replace=True``) by a JSON file or by the
    JSON value of a Prefect Variable named ``variable``."""
    data: dict[str, Any] | None = None
    if path is not None:
        data = json.loads(Path(path).read_text())
    elif variable is not None:
        from prefect.variables import Variable

        value = Variable.get(variable, default=None)
        data = json.loads(value) if isinstance(value, str) else value
        if data is None:
            raise ValueError(f"Prefect Variable '{variable}' is not set; it must hold a catalog.")
    if data is None:
        return default_catalog()
    if replace:
        return Catalog.model_validate({"version": "custom", **data})
    return default_catalog().merged(data)
