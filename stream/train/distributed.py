"""Scale-out glue: trainer ranks in one torch.distributed process group (gloo, CPU).

Ranks are started by hand or by an orchestrator (`unisar train --world-size W --rank R
--dist-addr HOST:PORT`); rank 0 hosts the rendezvous store at HOST:PORT. Here: which
partitions a rank owns, the collectives (`GlooSync`, the `StepSync` of model.data_parallel plus a
state broadcast) and what ranks tell each other at a checkpoint. The lockstep trainer that
uses them is stream.train.scaleout.

Every collective has the process group's timeout (`--dist-timeout`); a lost peer makes the
others raise `PeerLost` (at once when its connection drops, at the timeout when it hangs).
"""
from __future__ import annotations

import datetime
import io
import logging

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class PeerLost(RuntimeError):
    """A collective failed: a rank died, hung past the timeout, or left the group."""


class WorldMismatch(ValueError):
    """The ranks cannot work together: too few partitions, or different starting states."""


def owned_partitions(n_partitions: int, rank: int, world_size: int) -> list[int]:
    """The samples partitions rank `rank` of `world_size` consumes."""
    return [p for p in range(n_partitions) if p % world_size == rank]


def owns(partition: int, rank: int, world_size: int) -> bool:
    return partition % world_size == rank


class GlooSync:
    """The default process group, with the collectives the trainer and learner need."""

    def __init__(self, rank: int, world_size: int, addr: str, timeout_s: float) -> None:
        self.rank, self.world_size = rank, world_size
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"dist_addr: expected HOST:PORT, got {addr!r}")
        host = host.strip("[]")
        url = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
        log.info("rank %d of %d: joining the process group at %s", rank, world_size, addr)
        try:
            dist.init_process_group("gloo", init_method=url, rank=rank, world_size=world_size,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as exc:  # noqa: BLE001 - rendezvous timeout, address in use, ...
            raise PeerLost(f"rank {rank}: rendezvous at {addr} failed: {exc}") from exc
        log.info("rank %d of %d: process group ready", rank, world_size)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    # ---- StepSync (model.data_parallel)

    def all_gather(self, array: np.ndarray) -> list[np.ndarray]:
        array = np.ascontiguousarray(array, dtype=np.int64).ravel()
        try:
            sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world_size)]
            dist.all_gather(sizes, torch.tensor([len(array)], dtype=torch.int64))
            width = max(int(s) for s in sizes)
            padded = torch.zeros(width, dtype=torch.int64)
            padded[: len(array)] = torch.from_numpy(array)
            parts = [torch.zeros(width, dtype=torch.int64) for _ in range(self.world_size)]
            dist.all_gather(parts, padded)
        except Exception as exc:  # noqa: BLE001
            raise PeerLost(f"rank {self.rank}: lost the other ranks (all_gather: {exc})") from exc
        return [p[: int(s)].numpy() for p, s in zip(parts, sizes)]

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        try:
            dist.all_reduce(tensor)  # in place, sparse COO tensors included (gloo)
        except Exception as exc:  # noqa: BLE001
            raise PeerLost(f"rank {self.rank}: lost the other ranks (all_reduce: {exc})") from exc
        return tensor

    # ---- state

    def broadcast_state(self, state: dict | None) -> dict:
        """Rank 0's `state` on every rank (others pass None). torch.save bytes, loaded with
        weights_only=True: tensors and plain values only, as a checkpoint file."""
        try:
            if self.rank == 0:
                buf = io.BytesIO()
                torch.save(state, buf)
                data = torch.frombuffer(bytearray(buf.getbuffer()), dtype=torch.uint8)
                size = torch.tensor([len(data)], dtype=torch.int64)
            else:
                size = torch.zeros(1, dtype=torch.int64)
            dist.broadcast(size, src=0)
            if self.rank != 0:
                data = torch.empty(int(size), dtype=torch.uint8)
            dist.broadcast(data, src=0)
        except Exception as exc:  # noqa: BLE001
            raise PeerLost(f"rank {self.rank}: lost the other ranks (state broadcast: {exc})") from exc
        if self.rank == 0:
            return state
        return torch.load(io.BytesIO(data.numpy().tobytes()), map_location="cpu", weights_only=True)


# ---- what the ranks tell each other at a checkpoint


def digest_int(hexdigest: str) -> int:
    """A state digest as a non-negative int below 2**52: exact in an int64 and in a
    Prometheus gauge (a float64)."""
    return int(hexdigest, 16) & ((1 << 52) - 1)


def pack_progress(digest: int, offsets: dict[int, int], admission: torch.Tensor) -> np.ndarray:
    pairs = np.array(sorted(offsets.items()), np.int64).reshape(-1)
    return np.concatenate([np.array([digest, len(offsets)], np.int64), pairs, admission.numpy().astype(np.int64)])


def unpack_progress(packed: np.ndarray) -> tuple[int, dict[int, int], torch.Tensor]:
    digest, n = int(packed[0]), int(packed[1])
    pairs = packed[2 : 2 + 2 * n].reshape(-1, 2)
    return digest, {int(p): int(o) for p, o in pairs}, torch.from_numpy(packed[2 + 2 * n :].copy())
