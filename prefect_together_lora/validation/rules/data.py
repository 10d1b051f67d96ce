"""Optional data tier (T9): a sample of the weights, for no-op and non-finite adapters."""

from __future__ import annotations

from prefect_together_lora.sources.safetensors import SafetensorsHeader
from prefect_together_lora.validation.rules.common import (
    Findings,
    _names,
)

_NONFINITE_MASKS = {"F16": (2, 0x7C00), "BF16": (2, 0x7F80), "F32": (4, 0x7F800000)}


def _nonfinite(data: bytes, dtype: str) -> bool:
    width, mask = _NONFINITE_MASKS.get(dtype, (0, 0))
    if not width or len(data) % width:
        return False
    words = memoryview(data).cast("H" if width == 2 else "I")
    return any(w & mask == mask for w in words)


def check_data(header: SafetensorsHeader, sample: bytes, out: Findings) -> None:
    """T9 (optional): in the sampled start of the data, all-zero lora_B means the adapter does
    nothing (untrained); NaN or Inf anywhere means it is broken."""
    inside = [(n, t) for n, t in header.tensors.items() if t.end <= len(sample)]
    lora_b = [(n, t) for n, t in inside if n.endswith("lora_B.weight")]
    if not lora_b:
        out.info(
            "ADAPTER_NOT_SAMPLED",
            f"No lora_B tensor lies within the {len(sample):,} bytes sampled; data check skipped.",
        )
    elif all(not any(sample[t.begin : t.end]) for _, t in lora_b):
        out.warning(
            "ADAPTER_NOOP",
            f"All {len(lora_b)} sampled lora_B tensors are zero; this adapter has no effect "
            "(was training run?).",
            "Check the training run actually updated the adapter before saving.",
        )
    broken = [n for n, t in inside if _nonfinite(sample[t.begin : t.end], t.dtype)]
    if broken:
        out.error(
            "TENSOR_NOT_FINITE",
            f"NaN or Inf values in {_names(broken)}.",
            "Training diverged or the file is corrupt; retrain or re-save.",
        )
