"""Returning freed heap memory: available on Linux/glibc, harmless elsewhere, never changes results."""

from __future__ import annotations

import sys

import pytest
import torch

from padrec.data import make_split
from padrec.evaluation import EvalConfig
from padrec.methods import METHODS, MethodContext
from padrec.training.memory import release_freed_memory
from padrec.training.trainer import TrainConfig, Trainer


def test_release_freed_memory_is_available_exactly_on_glibc():
    """True where the C library is glibc (it has malloc_trim), False elsewhere (musl, macOS)."""
    import platform

    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert release_freed_memory() is on_glibc


def test_trimming_does_not_change_training(toy_dataset, tmp_path):
    split = make_split(toy_dataset)
    ctx = MethodContext(toy_dataset.num_items, split.config.max_len)
    weights = []
    for every in (0, 1):
        torch.manual_seed(0)
        m = METHODS.build("sequential", {"hidden_size": 8}, context=ctx)
        cfg = TrainConfig(epochs=2, batch_size=16, progress=False, seed=3, trim_memory_every=every, monitor="NDCG@5")
        Trainer(m, split, cfg, EvalConfig(ks=[5])).fit("train", tmp_path / f"t{every}", "fp")
        weights.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident size read from /proc (Linux only)")
def test_trim_gives_back_freed_heap_memory():
    def resident_mb() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096 / 2**20

    # Freeing a large mmapped block raises glibc's mmap threshold, so the mid-sized blocks of
    # varying size that follow come from the heap; freeing all but a few pinned ones leaves
    # the heap fragmented (the pattern of varying batch shapes).
    big = torch.ones(8_000_000)
    del big
    blocks = [torch.ones(500 + 20 * i, 256) for i in range(200)]
    pinned = blocks[::50]
    del blocks
    before = resident_mb()
    assert release_freed_memory()
    assert resident_mb() < before - 50
    del pinned


def test_heap_trimmer_trims_only_past_the_plateau(monkeypatch):
    import padrec.training.memory as memory

    sizes = iter([900, 1100, 1000, 1300, 1500, 1200, 1420])  # MB at successive checks
    monkeypatch.setattr(memory, "resident_bytes", lambda: next(sizes) << 20)
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(1) or True)
    trimmer = memory.HeapTrimmer(growth=0.25, min_growth_bytes=100 << 20, warmup=3)
    got = [trimmer.maybe_trim() for _ in range(7)]
    # plateau = max of the first three checks (1100 MB); the margin is 275 MB: trim above 1375 MB
    assert trimmer.plateau == 1100 << 20
    assert got == [False, False, False, False, True, False, True]
    assert len(calls) == trimmer.trims == 2


def test_heap_trimmer_trims_every_time_without_a_resident_size(monkeypatch):
    import padrec.training.memory as memory

    monkeypatch.setattr(memory, "resident_bytes", lambda: None)
    monkeypatch.setattr(memory, "release_freed_memory", lambda: True)
    trimmer = memory.HeapTrimmer()
    assert all(trimmer.maybe_trim() for _ in range(4)) and trimmer.trims == 4
