"""Counting torch tensors: unique elements of parameters, buffers and plain tensors, keyed on the memory
they view, so that tied and shared weights count once; weights hiding outside the parameter registry
(plain attributes, 2-D float buffers, quantized packed weights) count towards the limit and are flagged."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harness.probe.params.walk import Array

_LARGE_UNCOUNTED = 100_000     # an uncounted tensor this big (int table, 1-D float) is flagged for a look
_MAX_TENSOR_FLAGS = 10         # one flag per tensor up to this many, then one summary flag


class TorchCount:
    """Unique elements of parameters, buffers and plain tensors, keyed on the memory they view."""

    def __init__(self, flags: list[str], notes: list[str]):
        self.flags, self.notes = flags, notes
        self.params = self.buffers = self.plain = self.unregistered = 0
        self.keys: set[tuple] = set()
        self.claimed: list[tuple] = []          # every memory region counted or seen as a buffer
        self.param_regions: list[tuple] = []
        self.buffer_regions: list[tuple] = []
        self.n_weight_flags = 0
        self.unflagged: list[tuple[str, int]] = []
        self.dtypes: set[str] = set()           # of the counted modules' parameters: the team's precision
        self.cpu_bytes = 0                      # bytes of the counted tensors held in host memory
        self.device_bytes = 0                   # ... and on a device (CUDA), at their dtype's size
        self.device_params = 0                  # elements of the counted tensors on a device

    def add_modules(self, roots: list[tuple[str, nn.Module]]) -> None:
        quantized = 0
        for _, module in roots:
            for param in module.parameters():
                n = self._claim(param, self.param_regions)
                self.params += n
                self._add_bytes(param, n)
                self.dtypes.add(str(param.dtype).removeprefix("torch."))
            for name, sub in module.named_modules():
                quantized += self._add_packed_weights(name, sub)
        if quantized:
            self.params += quantized
            self.notes.append(f"{quantized:,} weights unpacked from quantized modules counted as parameters")
        for path, module in roots:
            for name, buf in module.named_buffers():
                n = self._claim(buf, self.buffer_regions)
                self.buffers += n
                if n and not _inside(buf, self.param_regions):
                    self._classify(buf, n, f"buffer {path}.{name}", "in a buffer, not a parameter")
        self._flag_remaining()

    def add_plain_tensors(self, tensors: list[tuple[str, Array]]) -> None:
        for path, tensor in tensors:
            if _inside(tensor, self.param_regions) or _inside(tensor, self.buffer_regions):
                continue  # a view of a counted parameter or buffer holds no new weights
            n = self._claim(tensor, [])
            self.plain += n
            if n:
                self._classify(tensor, n, f"attribute {path}",
                               "in plain tensors outside the nn.Module parameter registry")
        self._flag_remaining()

    def _claim(self, tensor: Array, regions: list[tuple]) -> int:
        """Elements of this tensor if its memory view was not counted before, else 0."""
        key = _memory_key(tensor)
        if key in self.keys:
            return 0
        self.keys.add(key)
        region = _region(tensor)
        if region is not None:
            regions.append(region)
            self.claimed.append(region)
        return int(tensor.size if isinstance(tensor, np.ndarray) else tensor.numel())

    def _classify(self, tensor: Array, n: int, where: str, what: str) -> None:
        if _is_weight_like(tensor):
            self.unregistered += n
            self._add_bytes(tensor, n)
            self.n_weight_flags += 1
            if self.n_weight_flags <= _MAX_TENSOR_FLAGS:
                self.flags.append(f"{n:,} weights {what} ({where}): counted towards the limit")
            else:
                self.unflagged.append((where, n))
        elif n >= _LARGE_UNCOUNTED:
            self.flags.append(f"{n:,} elements ({_describe(tensor)}) {what} ({where}) are not counted as "
                              f"weights: check that they are not")

    def _flag_remaining(self) -> None:
        if self.unflagged:
            total = sum(n for _, n in self.unflagged)
            self.flags.append(f"{total:,} weights in {len(self.unflagged)} more unregistered tensors "
                              f"(first: {self.unflagged[0][0]}): counted towards the limit")
            self.unflagged = []

    def _add_packed_weights(self, name: str, module: nn.Module) -> int:
        """Weights of torch.ao quantized modules, which live in C++ objects, not in parameters()."""
        if not any("packed" in k and isinstance(v, torch.ScriptObject) for k, v in vars(module).items()):
            return 0
        unpack = getattr(module, "_weight_bias", None) or getattr(module, "_weight", None)
        try:
            unpacked = unpack() if callable(unpack) else None
        except Exception as exc:
            unpacked, reason = None, str(exc)
        else:
            reason = "no known way to unpack it"
        if unpacked is None:
            self.flags.append(f"packed weights in module {name or '<root>'} ({type(module).__name__}) could "
                              f"not be read ({reason}): not counted")
            return 0
        tensors = unpacked if isinstance(unpacked, (tuple, list)) else [unpacked]
        total = 0
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                n = self._claim(tensor, self.param_regions)
                self._add_bytes(tensor, n)
                total += n
        return total

    def _add_bytes(self, tensor: Array, n: int) -> None:
        """The bytes of a counted tensor (its dtype's size), where they sit: host memory, or a device's (a GPU
        tensor's bytes, checked against NVML by the host); a meta tensor holds none."""
        if isinstance(tensor, np.ndarray):
            self.cpu_bytes += n * tensor.itemsize
        elif tensor.device.type == "cpu":
            self.cpu_bytes += n * tensor.element_size()
        elif tensor.device.type != "meta":
            self.device_bytes += n * tensor.element_size()
            self.device_params += n


def _memory_key(tensor: Array) -> tuple:
    """Same key for two tensor objects viewing the same region: storage pointer+offset, shape, stride."""
    if isinstance(tensor, np.ndarray):
        address = tensor.__array_interface__["data"][0]
        return ("cpu", address, tensor.shape, tensor.strides, tensor.dtype.str)
    try:
        address = tensor.data_ptr()
    except Exception:  # sparse and other layouts without one data pointer
        address = 0
    if address == 0:  # meta tensors, empty tensors: no memory to share
        return ("object", id(tensor))
    strides = tuple(s * tensor.element_size() for s in tensor.stride())
    return (str(tensor.device), address, tuple(tensor.shape), strides, str(tensor.dtype))


def _region(tensor: Array) -> tuple | None:
    """(device, first byte, end byte) of the memory a strided tensor or array spans."""
    key = _memory_key(tensor)
    if key[0] == "object" or 0 in key[2]:
        return None
    device, address, shape, strides = key[:4]
    itemsize = tensor.itemsize if isinstance(tensor, np.ndarray) else tensor.element_size()
    low = address + sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    high = address + sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) + itemsize
    return (device, low, high)


def _inside(tensor: Array, regions: list[tuple]) -> bool:
    region = _region(tensor)
    return region is not None and any(
        region[0] == r[0] and r[1] <= region[1] and region[2] <= r[2] for r in regions)


def _is_weight_like(tensor: Array) -> bool:
    """Float (or quantized) with at least 2 dims: a weight matrix, not an id table or a running stat."""
    if isinstance(tensor, np.ndarray):
        return tensor.ndim >= 2 and np.issubdtype(tensor.dtype, np.floating)
    return tensor.dim() >= 2 and (tensor.is_floating_point() or tensor.is_quantized)


def _describe(tensor: Array) -> str:
    return f"{tensor.dtype}, {tensor.ndim}-D" if isinstance(tensor, np.ndarray) else (
        f"{str(tensor.dtype).removeprefix('torch.')}, {tensor.dim()}-D")
