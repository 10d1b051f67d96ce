"""Write LoRA adapters in the exact PEFT layout, and archive them, for tests and demos.

Tensor names ``base_model.model.<prefix>layers.N.<block>.<proj>.lora_{A,B}.weight`` and shapes
``[r, in]`` / ``[out, r]`` come from the bases' published dimensions (the builder's own table,
:mod:`~prefect_together_lora.testing.base_dims`, independent of the validator's catalog), so a
generated adapter is what ``peft.save_pretrained`` would write for that base (few layers,
small rank).
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prefect_together_lora.testing.base_dims import base_dims, lora_modules

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I32": 4, "I64": 8}


def safetensors_bytes(
    tensors: Mapping[str, tuple[str, list[int]]],
    *,
    fill: str = "random",
    metadata: Mapping[str, str] | None = None,
    seed: int = 0,
) -> Iterable[bytes]:
    """Yield a safetensors file: header, then data (``random``, ``zeros`` or ``nan`` fill) in
    chunks, so multi-GB files can be written in constant memory."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    yield struct.pack("<Q", len(raw)) + raw
    yield from _fill(offset, fill, seed)


def _fill(total: int, fill: str, seed: int) -> Iterable[bytes]:
    chunk = 1 << 20
    if fill == "zeros":
        zeros = bytes(chunk)
        while total > 0:
            n = min(chunk, total)
            yield zeros[:n]
            total -= n
        return
    if fill == "nan":
        pattern = b"\xc0\x7f"  # BF16/F16-ish NaN bit pattern, repeated
        block = pattern * (chunk // 2)
        while total > 0:
            n = min(chunk, total)
            yield block[:n]
            total -= n
        return
    import random

    rng = random.Random(seed)
    while total > 0:
        n = min(chunk, total)
        words = bytearray(rng.randbytes(n))
        # small finite values: mask the high (sign/exponent) byte of every 16-bit word
        words[1::2] = bytes(words[1::2]).translate(_SMALL)
        yield bytes(words)
        total -= n


_SMALL = bytes(b & 0x3B for b in range(256))


def lora_tensors(
    base_model: str,
    *,
    rank: int = 8,
    layers: Iterable[int] = (0, 1),
    modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    dtype: str = "BF16",
    experts: int = 1,
    prefix: str | None = None,
) -> dict[str, tuple[str, list[int]]]:
    """The PEFT tensor table (name → dtype, shape) of a LoRA on ``base_model``."""
    dims = base_dims(base_model)
    wrapper = dims.prefix if prefix is None else prefix
    tensors: dict[str, tuple[str, list[int]]] = {}
    for layer in layers:
        for path, fan_in, fan_out in lora_modules(dims, layer, modules, experts):
            key = f"base_model.model.{wrapper}layers.{layer}.{path}"
            tensors[f"{key}.lora_A.weight"] = (dtype, [rank, fan_in])
            tensors[f"{key}.lora_B.weight"] = (dtype, [fan_out, rank])
    return tensors


def adapter_config(
    base_model: str,
    *,
    rank: int = 8,
    alpha: float = 16,
    modules: Iterable[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    **overrides: Any,
) -> dict[str, Any]:
    """An ``adapter_config.json`` as PEFT 0.13+ writes it."""
    config: dict[str, Any] = {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layer_replication": None,
        "layers_pattern": None,
        "layers_to_transform": None,
        "loftq_config": {},
        "lora_alpha": alpha,
        "lora_dropout": 0.05,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": rank,
        "rank_pattern": {},
        "revision": None,
        "target_modules": sorted(modules),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }
    config.update(overrides)
    return config


def write_adapter(
    directory: str | os.PathLike[str],
    base_model: str = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    *,
    rank: int = 8,
    alpha: float = 16,
    layers: Iterable[int] = (0, 1),
    modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    dtype: str = "BF16",
    fill: str = "random",
    tensors: Mapping[str, tuple[str, list[int]]] | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    table = (
        tensors
        if tensors is not None
        else lora_tensors(base_model, rank=rank, layers=layers, modules=modules, dtype=dtype)
    )
    cfg = (
        config
        if config is not None
        else adapter_config(base_model, rank=rank, alpha=alpha, modules=modules)
    )
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    with (out / "adapter_model.safetensors").open("wb") as fh:
        for chunk in safetensors_bytes(table, fill=fill, metadata={"format": "pt"}, seed=seed):
            fh.write(chunk)
    return out


def zip_folder(
    folder: str | os.PathLike[str],
    archive: str | os.PathLike[str],
    *,
    compress: bool = True,
    inside: str = "",
) -> Path:
    """Zip the files of ``folder`` (at the root, or under ``inside/`` to make a nested one)."""
    folder, archive = Path(folder), Path(archive)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(archive, "w", compression=method) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{inside}{path.relative_to(folder).as_posix()}")
    return archive


def tar_folder(
    folder: str | os.PathLike[str],
    archive: str | os.PathLike[str],
    *,
    gzip: bool = True,
    inside: str = "",
) -> Path:
    folder, archive = Path(folder), Path(archive)
    with tarfile.open(archive, "w:gz" if gzip else "w") as tf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tf.add(path, f"{inside}{path.relative_to(folder).as_posix()}")
    return archive


def zip_bytes(members: Mapping[str, bytes], *, compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


__all__ = [
    "adapter_config",
    "lora_tensors",
    "safetensors_bytes",
    "tar_folder",
    "write_adapter",
    "zip_bytes",
    "zip_folder",
]
