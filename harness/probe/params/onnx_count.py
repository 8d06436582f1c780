"""Counting ONNX weights: initializer elements (and weight-like constants), identical content counted once
across files, because exporters write a tied weight out once per use. onnx is imported only when a file
must be counted."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

UNKNOWN_ITEMSIZE = 4       # bytes an element where the dtype cannot be read (the lenient reading for the team)
ONNX_MISSING = "install onnx (pip install lightlm-harness[onnx]) to count ONNX initializers"


@dataclass(frozen=True)
class OnnxCount:
    """Initializer elements in one ONNX file, identical tensors (dtype, dims and bytes) counted once."""

    path: str
    params: int
    initializers: int
    duplicates_dropped: int
    nbytes: int = 0            # what the counted tensors hold at their dtype's size (4 bytes where unknown)


def _add_unique(tensors: list[tuple[str, int, int]], seen: set[str]) -> tuple[int, int, int]:
    """(elements of tensors whose content digest is not in `seen` yet, how many were repeats, the bytes of the
    ones counted); updates `seen`."""
    params = dropped = nbytes = 0
    for digest, numel, size in tensors:
        if digest in seen:
            dropped += 1
        else:
            seen.add(digest)
            params += numel
            nbytes += size
    return params, dropped, nbytes


def count_onnx_initializers(path: Path | str) -> OnnxCount:
    """Initializer elements of one ONNX file, identical tensors (dtype, dims, bytes) counted once.

    Exporters write a tied weight out once per use (or once transposed), so counting raw initializers would
    punish tying.
    Sparse initializers count their dense size; float >= 2-D tensors in Constant nodes count too (some
    exporters fold weights into constants). Raises ImportError when onnx is not installed.
    """
    tensors = _onnx_weight_tensors(Path(path))
    params, dropped, nbytes = _add_unique(tensors, set())
    return OnnxCount(path=str(path), params=params, initializers=len(tensors), duplicates_dropped=dropped,
                     nbytes=nbytes)


def count_onnx_files(entries: list[tuple[str, Path]], flags: list[str],
                      notes: list[str]) -> tuple[int, int, list[str], int]:
    """Elements over all files, content duplicates dropped across files too (a weight shared by two); the
    duplicates dropped, the files counted, and the bytes the counted tensors hold at their dtype's size."""
    seen: set[str] = set()
    params = dropped = nbytes = 0
    counted_files: list[str] = []
    done: set[Path] = set()
    for label, path in entries:
        if path.resolve() in done:
            continue
        done.add(path.resolve())
        try:
            tensors = _onnx_weight_tensors(path)
        except ImportError:
            raise
        except Exception as exc:  # a malformed or missing team file is the team's problem, not a crash
            flags.append(f"ONNX file {path} ({label}) could not be read, its weights are not counted: "
                         f"{type(exc).__name__}: {exc}")
            continue
        counted_files.append(str(path))
        added, repeated, size = _add_unique(tensors, seen)
        params, dropped, nbytes = params + added, dropped + repeated, nbytes + size
    if dropped:
        notes.append(f"{dropped} ONNX initializer(s) identical to another were counted once")
    return params, dropped, counted_files, nbytes


def _onnx_weight_tensors(path: Path) -> list[tuple[str, int, int]]:
    """(content digest, element count, bytes) for every initializer and weight-like constant, subgraphs
    included."""
    onnx = _import_onnx()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    model = onnx.load(str(path))
    out: list[tuple[str, int]] = []
    floats = _onnx_float_types(onnx)
    for graph in _graphs(model.graph, onnx):
        out.extend(_tensor_digest(t, onnx) for t in graph.initializer)
        for sparse in graph.sparse_initializer:
            out.append((_digest(-1, tuple(sparse.dims), sparse.SerializeToString(deterministic=True)),
                        math.prod(sparse.dims), UNKNOWN_ITEMSIZE * math.prod(sparse.dims)))
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value" and len(attr.t.dims) >= 2 and attr.t.data_type in floats:
                        out.append(_tensor_digest(attr.t, onnx))
    return out


def _onnx_float_types(onnx: Any) -> set[int]:
    """FLOAT, DOUBLE, FLOAT16, BFLOAT16 and the FLOAT8/FLOAT4 kinds this onnx version knows."""
    return {code for name, code in onnx.TensorProto.DataType.items() if "FLOAT" in name or name == "DOUBLE"}


def _graphs(graph: Any, onnx: Any):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g, onnx)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub, onnx)


def _tensor_digest(tensor: Any, onnx: Any) -> tuple[str, int, int]:
    """Digest of dtype, dims and values, the same whether the values sit in raw_data or typed fields.

    A 2-D tensor and its transpose get the same digest: torch.onnx folds the transpose of a tied output
    embedding into a second initializer, which is still the one tied weight.
    """
    try:
        array = onnx.numpy_helper.to_array(tensor)
    except Exception:  # unusual dtypes: fall back on the serialized tensor without its name
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = ""
        payload = copy.SerializeToString(deterministic=True)
        return (_digest(tensor.data_type, tuple(tensor.dims), payload), math.prod(tensor.dims),
                UNKNOWN_ITEMSIZE * math.prod(tensor.dims))
    views = [array, array.T] if array.ndim == 2 else [array]
    digest = min(_digest(tensor.data_type, v.shape, np.ascontiguousarray(v).tobytes()) for v in views)
    return digest, int(array.size), int(array.nbytes)


def _digest(data_type: int, dims: tuple, payload: bytes) -> str:
    digest = hashlib.sha256(f"{data_type}:{tuple(int(d) for d in dims)}:".encode())
    digest.update(payload)
    return digest.hexdigest()


def _import_onnx() -> Any:
    try:
        import onnx
        import onnx.numpy_helper
    except ImportError as exc:
        raise ImportError(ONNX_MISSING) from exc
    return onnx
