"""Real batches for the training step, drawn uniformly with replacement: from a tensor on the device
(:class:`TensorSource`), or for a set too large for it, from pinned host memory (:class:`HostSource`).

Images are kept as stored (uint8 for 8-bit sets: a quarter of float32's memory) and become floats in
[-1, 1] one batch at a time, on the device. ``mirror`` flips each drawn image left-right with
probability 1/2 (StyleGAN2-ADA's ``--mirror`` doubles the set with its x-flips; drawing a flip at random
is the same distribution). Neither draw syncs with the host, so a device-resident source can be
captured in a CUDA graph; a host source cannot (``graph_safe`` is False) and keeps the step eager.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: A set larger than this fraction of the device's free memory (when the source is built) is streamed
#: from pinned host memory instead of being copied to the device. G, D, their optimisers, activations
#: and any other trial sharing the GPU need the rest.
DEVICE_FRACTION = 0.25


def _as_float(batch: Tensor) -> Tensor:
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch


def _mirrored(batch: Tensor, generator: torch.Generator | None) -> Tensor:
    flip = torch.rand(batch.shape[0], device=batch.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, *([1] * (batch.dim() - 1))), batch.flip(-1), batch)


def as_batch(stored: Tensor, mirror: bool, generator: torch.Generator | None) -> Tensor:
    """Drawn rows as the step takes them: floats in [-1, 1], each flipped with probability 1/2 where
    ``mirror``."""
    batch = _as_float(stored)
    return _mirrored(batch, generator) if mirror else batch


class TensorSource:
    """Batches indexed out of a tensor kept on the device (uint8 or float), floats in [-1, 1] out."""

    graph_safe = True

    def __init__(self, data: Tensor, device: torch.device | str = "cpu", mirror: bool = False):
        if data.shape[0] == 0:
            raise ValueError("dataset is empty")
        self.data = data.to(device)
        self.shape = tuple(data.shape[1:])
        self.mirror = mirror

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.randint(0, self.data.shape[0], (n,), device=self.data.device, generator=generator)
        return as_batch(self.data[idx], self.mirror, generator)


class HostSource:
    """Batches gathered on the CPU from pinned host memory, copied to the device without blocking the host
    (a pinned staging buffer per batch size), then made floats there. For sets the device cannot hold."""

    graph_safe = False  # the gather runs on the host: a captured graph would replay one batch forever

    def __init__(self, data: Tensor, device: torch.device | str, mirror: bool = False, seed: int = 0):
        if data.shape[0] == 0:
            raise ValueError("dataset is empty")
        self.device = torch.device(device)
        pin = self.device.type == "cuda"
        self.data = data.contiguous().pin_memory() if pin and not data.is_pinned() else data.contiguous()
        self.shape = tuple(data.shape[1:])
        self.mirror = mirror
        self._host_gen = torch.Generator().manual_seed(seed)
        self._staging: dict[int, list[Tensor]] = {}
        self._copied: dict[tuple[int, int], torch.cuda.Event] = {}
        self._turn = 0

    def _buffer(self, n: int) -> tuple[int, Tensor]:
        # Two buffers per size, used in turn: a batch's copy may still be in flight when the next is gathered.
        pair = self._staging.get(n)
        if pair is None:
            pin = self.device.type == "cuda"
            pair = [torch.empty((n, *self.shape), dtype=self.data.dtype, pin_memory=pin) for _ in range(2)]
            self._staging[n] = pair
        self._turn ^= 1
        return self._turn, pair[self._turn]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.randint(0, self.data.shape[0], (n,), generator=self._host_gen)
        slot, buf = self._buffer(n)
        copied = self._copied.get((n, slot))
        if copied is not None:
            copied.synchronize()  # this buffer's previous copy to the device is done: safe to overwrite
        torch.index_select(self.data, 0, idx, out=buf)
        # On the CPU ``to`` would hand back the buffer itself, which the batch after next overwrites.
        batch = buf.to(self.device, non_blocking=True) if self.device.type == "cuda" else buf.clone()
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            self._copied[(n, slot)] = event
        return as_batch(batch, self.mirror, generator)


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether a set of ``nbytes`` stays on ``device`` (see :data:`DEVICE_FRACTION`); always on the CPU."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_FRACTION * free


def make_image_source(data: Tensor, device: torch.device | str, mirror: bool = False, seed: int = 0):
    """A :class:`TensorSource` where ``data`` fits on the device, else a :class:`HostSource`."""
    device = torch.device(device)
    if fits_on_device(data.numel() * data.element_size(), device):
        return TensorSource(data, device, mirror)
    return HostSource(data, device, mirror, seed)
