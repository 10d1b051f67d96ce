"""safetensors header parsing with hard caps: never trusts a length, an offset or a shape.

The format: 8 bytes little-endian N, then N bytes of UTF-8 JSON (may be space-padded), then the
data buffer. Every problem becomes a :class:`HeaderProblem` with a reason, never an exception
from deep inside ``json`` or arithmetic on hostile numbers.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_HEADER_BYTES = 25_000_000  # huggingface_hub's SAFETENSORS_MAX_HEADER_LENGTH
MAX_TENSORS = 200_000
MAX_DIMS = 8
MAX_ELEMENTS = 2**48

DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}


class HeaderProblem(Exception):
    """The header is not a valid safetensors header; ``str()`` says why, for a user."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class SafetensorsHeader:
    header_len: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    file_size: int | None

    @property
    def data_end(self) -> int:
        return max((t.end for t in self.tensors.values()), default=0)

    @property
    def parameters(self) -> int:
        return sum(t.elements for t in self.tensors.values())


def read_header_bytes(
    read: Callable[[int], bytes], file_size: int | None, max_header: int = MAX_HEADER_BYTES
) -> tuple[int, bytes]:
    """Read ``8 + N`` bytes through ``read(n)`` (from the start of the file): (N, JSON bytes)."""
    first = read_exactly(read, 8)
    if len(first) < 8:
        raise HeaderProblem(f"file is {len(first)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", first)
    if n == 0:
        raise HeaderProblem("header length is 0")
    if n > max_header:
        raise HeaderProblem(f"header length {n:,} exceeds the {max_header:,}-byte limit")
    if file_size is not None and 8 + n > file_size:
        raise HeaderProblem(
            f"header length {n:,} runs past the end of the {file_size:,}-byte file"
            " (truncated upload?)"
        )
    first_byte = read_exactly(read, 1)
    if first_byte != b"{":
        # checked before reading N bytes: a zip bomb posing as a header costs one byte
        raise HeaderProblem("header JSON does not start with '{'")
    raw = first_byte + read_exactly(read, n - 1)
    if len(raw) < n:
        raise HeaderProblem(f"file ends inside the {n:,}-byte header (truncated upload?)")
    return n, raw


def read_exactly(read: Callable[[int], bytes], n: int) -> bytes:
    """Up to ``n`` bytes through ``read``, in bounded chunks (stops early at end of file)."""
    chunks, got = [], 0
    while got < n:
        chunk = read(min(n - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def parse_header(raw: bytes, file_size: int | None) -> SafetensorsHeader:
    """Validate the JSON header like the reference implementation; raises HeaderProblem."""
    n = len(raw)
    if raw[:1] != b"{":
        raise HeaderProblem("header JSON does not start with '{'")
    _check_json_size(raw)
    try:
        document = json.loads(raw.decode("utf-8").rstrip(" "))
    except UnicodeDecodeError:
        raise HeaderProblem("header is not valid UTF-8") from None
    except ValueError as exc:
        raise HeaderProblem(f"header is not valid JSON ({exc.args[0][:80]})") from None
    except RecursionError:
        raise HeaderProblem("header JSON is nested too deeply") from None
    if not isinstance(document, dict):
        raise HeaderProblem("header JSON is not an object")
    if has_lone_surrogate(raw):
        # serde_json (the reference parser) refuses these, and they crash any UTF-8 output
        raise HeaderProblem("header holds a \\u escape of a lone UTF-16 surrogate (not text)")
    return tensors_from_document(document, n, file_size)


# Each tensor entry is one object and two arrays of at most 8 numbers: these bounds are far
# above any adapter and far below what would let a 25 MB header of `{},{},…` take a gigabyte.
_MAX_OBJECTS = MAX_TENSORS + 2
_MAX_ARRAYS = 2 * MAX_TENSORS + 2
_MAX_VALUES = 16 * MAX_TENSORS


def _check_json_size(raw: bytes) -> None:
    """Count structure bytes before json builds a Python object per value (strings may
    contain them too, which only makes this stricter for names full of braces)."""
    if raw.count(b"{") > _MAX_OBJECTS or raw.count(b"[") > _MAX_ARRAYS:
        raise HeaderProblem(f"header holds more objects or arrays than {MAX_TENSORS:,} tensors")
    if raw.count(b",") > _MAX_VALUES:
        raise HeaderProblem(f"header holds more values than {MAX_TENSORS:,} tensors can")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def has_lone_surrogate(raw: bytes) -> bool:
    """True when JSON text escapes a UTF-16 surrogate that is not half of a pair: Python's
    json accepts it, and the str it yields cannot be encoded, printed or stored as UTF-8."""
    if not _SURROGATE_ESCAPE.search(raw):
        return False
    try:
        json.dumps(json.loads(raw.decode("utf-8", "replace")), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        return False
    return False


def tensors_from_document(
    document: dict[str, Any], header_len: int, file_size: int | None
) -> SafetensorsHeader:
    metadata = document.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise HeaderProblem("__metadata__ must map strings to strings")
    entries = [(k, v) for k, v in document.items() if k != "__metadata__"]
    if len(entries) > MAX_TENSORS:
        raise HeaderProblem(f"header lists {len(entries):,} tensors (limit {MAX_TENSORS:,})")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in entries:
        tensors[name] = _tensor(name, entry)
    ordered = sorted(tensors.values(), key=lambda t: (t.begin, t.end))
    position = 0
    for tensor in ordered:
        if tensor.begin != position:
            kind = "overlaps the previous tensor" if tensor.begin < position else "leaves a hole"
            raise HeaderProblem(
                f"tensor '{tensor.name}' {kind} (offset {tensor.begin:,}, expected {position:,})"
            )
        position = tensor.end
    if file_size is not None and 8 + header_len + position != file_size:
        if 8 + header_len + position > file_size:
            raise HeaderProblem(
                f"data ends at {8 + header_len + position:,} but the file is "
                f"{file_size:,} bytes (truncated upload?)"
            )
        raise HeaderProblem(
            f"file is {file_size:,} bytes but the tensors end at "
            f"{8 + header_len + position:,} (trailing data)"
        )
    return SafetensorsHeader(header_len, tensors, dict(metadata), file_size)


def _tensor(name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise HeaderProblem(f"entry '{name[:100]}' is not an object")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise HeaderProblem(f"tensor '{name[:100]}' has unknown dtype {str(dtype)[:20]!r}")
    shape = entry.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise HeaderProblem(f"tensor '{name[:100]}' has an invalid shape")
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise HeaderProblem(f"tensor '{name[:100]}' has invalid data_offsets")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise HeaderProblem(f"tensor '{name[:100]}' has negative or reversed data_offsets")
    elements = 1
    for dim in shape:
        elements *= dim
        if elements > MAX_ELEMENTS:
            raise HeaderProblem(f"tensor '{name[:100]}' shape overflows ({shape[:MAX_DIMS]})")
    bits = elements * DTYPE_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        raise HeaderProblem(
            f"tensor '{name[:100]}' occupies {end - begin:,} bytes but shape "
            f"{shape} of {dtype} needs {bits / 8:,.0f}"
        )
    return TensorInfo(name, dtype, tuple(shape), begin, end)
