"""Only safetensors are ever loaded: pickled files in an input are refused, never opened.

A pickle runs code when it is loaded (`torch.load`, `pickle.load`), so a model or adapter folder
holding one is refused as a whole, before anything reads it: by name (`.bin`, `.pt`, `.pth`,
`.pkl`, ...) and by content (a pickle stream or a `torch.save` zip under any other name).
Safetensors files are checked to be well formed (header, offsets, dtypes) without loading them.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from services.common.errors import InvalidArgument

# Formats that unpickle on load (torch.save, pickle, joblib, numpy object arrays, Keras h5
# lambdas are out of scope): refused wherever they appear in an input folder.
PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".dill"}
)
# Text formats never sniffed (a JSON file cannot be a pickle stream anyway).
_TEXT_SUFFIXES = frozenset({".json", ".jinja", ".txt", ".md", ".py", ".yaml", ".yml"})
_PICKLE_PROTOCOL_BYTES = frozenset({2, 3, 4, 5})
_ZIP_MAGIC = b"PK\x03\x04"
# Largest header a safetensors file may declare (the format's own limit is 100 MB).
_MAX_HEADER = 100 * 1024 * 1024
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


def _looks_pickled(path: Path) -> bool:
    """A pickle stream (protocol 2+) or a zip archive (what torch.save writes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    if head.startswith(_ZIP_MAGIC):
        return True
    return len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOL_BYTES


def unsafe_files(folder: Path) -> list[str]:
    """Relative paths under `folder` that are (or look like) pickles, sorted."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES or (
            suffix not in _TEXT_SUFFIXES and suffix != ".safetensors" and _looks_pickled(path)
        ):
            found.append(path.relative_to(folder).as_posix())
    return found


def refuse_pickles(folder: Path, what: str) -> None:
    """InvalidArgument naming every pickled file in `folder` (`what` names the input)."""
    found = unsafe_files(folder)
    if found:
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise InvalidArgument(
            f"{what} contains pickle files, which are never loaded (they can run code): {shown}. "
            "Only safetensors weights are accepted: save with `save_pretrained(..., "
            "safe_serialization=True)` and remove the pickle files"
        )


def safetensors_header(path: Path, what: str) -> dict[str, dict]:
    """The tensor table of a safetensors file, checked to describe the file exactly.

    Raises InvalidArgument for a truncated file, a bad header, unknown dtypes, or offsets that
    overlap, leave gaps or run past the end; nothing is loaded.
    """
    def bad(problem: str) -> InvalidArgument:
        return InvalidArgument(f"{what} is not a valid safetensors file: {problem}")

    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise bad(f"{size} bytes, too short for a header")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(_MAX_HEADER, size - 8):
            raise bad(f"header length {header_len} exceeds the file ({size} bytes)")
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    header.pop("__metadata__", None)
    data_len = size - 8 - header_len
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or {"dtype", "shape", "data_offsets"} - info.keys():
            raise bad(f"tensor {name!r} lacks dtype, shape or data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _DTYPE_BYTES:
            raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise bad(f"tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            raise bad(f"tensor {name!r} has invalid data_offsets {offsets!r}")
        if offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise bad(f"tensor {name!r}: {dtype}{shape} does not fit its {offsets} byte span")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for start, stop, name in sorted(spans):
        if start != end:
            raise bad(f"tensor {name!r} starts at byte {start}, expected {end} (gap or overlap)")
        end = stop
    if end != data_len:
        raise bad(f"tensors cover {end} bytes but the file holds {data_len} (truncated?)")
    return header
