"""Save and load model artifacts as .npz archives, never with pickle."""
from __future__ import annotations

import io
import json
from typing import Any, Mapping

import numpy as np

_META = "__meta__"


def pack_strings(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 buffer plus offsets: compact, and loadable without pickle."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def unpack_strings(buffer: np.ndarray, offsets: np.ndarray) -> list[str]:
    """The inverse of pack_strings."""
    raw = buffer.tobytes()
    return [raw[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1)]


def dumps(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    """Serialise arrays and JSON metadata to .npz bytes."""
    out = io.BytesIO()
    payload = dict(arrays)
    payload[_META] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    np.savez(out, **payload)  # type: ignore[arg-type]
    return out.getvalue()


def loads(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read .npz bytes written by dumps."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files if name != _META}
        meta = json.loads(archive[_META].tobytes().decode("utf-8"))
    return arrays, meta
