"""The test-adapter builder's own table of base-model dimensions, copied from each model's
published ``config.json`` (Hugging Face), deliberately separate from the validator's catalog:
an adapter built from a wrong catalog entry would otherwise pass the checks of that same
entry. Keys are the model names without org and ``-Reference``, lower case."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Moe:
    style: str  # "llama4": MoE every ``step`` layers with a shared expert; "qwen3": all layers
    expert_intermediate: int
    experts: int
    step: int = 1
    dense_intermediate: int | None = None


@dataclass(frozen=True)
class BaseDims:
    hidden: int  # hidden_size
    intermediate: int  # intermediate_size
    layers: int  # num_hidden_layers
    heads: int  # num_attention_heads
    kv_heads: int  # num_key_value_heads
    head_dim: int
    prefix: str = "model."  # what comes before "layers.N." in PEFT keys
    moe: Moe | None = None


DIMS: dict[str, BaseDims] = {
    "meta-llama-3.1-8b-instruct": BaseDims(4096, 14336, 32, 32, 8, 128),
    "meta-llama-3.1-70b-instruct": BaseDims(8192, 28672, 80, 64, 8, 128),
    "qwen2.5-14b-instruct": BaseDims(5120, 13824, 48, 40, 8, 128),
    "qwen2.5-72b-instruct": BaseDims(8192, 29568, 80, 64, 8, 128),
    "llama-4-maverick-17b-128e-instruct": BaseDims(
        5120,
        8192,
        48,
        40,
        8,
        128,
        prefix="language_model.model.",
        moe=Moe("llama4", 8192, 128, step=2, dense_intermediate=16384),
    ),
    "qwen3-235b-a22b-instruct-2507-tput": BaseDims(
        4096, 12288, 94, 64, 4, 128, moe=Moe("qwen3", 1536, 128)
    ),
}


def base_dims(name: str) -> BaseDims:
    key = name.strip().lower().removesuffix("-reference").rsplit("/", 1)[-1]
    if key not in DIMS:
        raise ValueError(f"no test dimensions for base model {name!r}: add them to DIMS")
    return DIMS[key]


def lora_modules(
    dims: BaseDims, layer: int, modules: tuple[str, ...], experts: int = 1
) -> list[tuple[str, int, int]]:
    """(module path, in, out) of each LoRA-wrapped linear of ``modules`` at ``layer``."""
    q, kv = dims.heads * dims.head_dim, dims.kv_heads * dims.head_dim
    shapes = {
        "q_proj": ("self_attn", dims.hidden, q),
        "k_proj": ("self_attn", dims.hidden, kv),
        "v_proj": ("self_attn", dims.hidden, kv),
        "o_proj": ("self_attn", q, dims.hidden),
    }
    out = [(f"{block}.{m}", i, o) for m, (block, i, o) in shapes.items() if m in modules]
    mlp = [m for m in ("gate_proj", "up_proj", "down_proj") if m in modules]
    moe = dims.moe
    if moe is None:
        blocks = [("mlp", dims.intermediate)]
    elif moe.style == "llama4" and (layer + 1) % moe.step == 0:
        blocks = [("feed_forward.shared_expert", moe.expert_intermediate)]
    elif moe.style == "llama4":
        blocks = [("feed_forward", moe.dense_intermediate or dims.intermediate)]
    else:
        blocks = [(f"mlp.experts.{e}", moe.expert_intermediate) for e in range(experts)]
    for block, inter in blocks:
        for m in mlp:
            i, o = (inter, dims.hidden) if m == "down_proj" else (dims.hidden, inter)
            out.append((f"{block}.{m}", i, o))
    return out
