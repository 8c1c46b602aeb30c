"""Shared fixtures: small generated datasets and paths to the real shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from padrec.data.dataset import SequenceDataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PADREC_DATA_DIR", REPO.parent / "shared" / "data"))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
torch.set_num_threads(min(2, torch.get_num_threads()))


def make_toy_dataset(num_users: int = 120, num_items: int = 40, seed: int = 0) -> SequenceDataset:
    """Users walk a cyclic item chain (item i is usually followed by i+1), so a sequential
    model can learn the next item; lengths 5..12."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(num_users):
        length = int(rng.integers(5, 13))
        start = int(rng.integers(1, num_items + 1))
        seq = [(start + t - 1) % num_items + 1 for t in range(length)]
        for t in range(length):
            if rng.random() < 0.1:
                seq[t] = int(rng.integers(1, num_items + 1))
        seqs.append(np.asarray(seq, dtype=np.int64))
    titles = [""] + [f"item {i} title" for i in range(1, num_items + 1)]
    return SequenceDataset(
        name="toy",
        sequences=seqs,
        user_ids=np.asarray([f"u{u}" for u in range(num_users)]),
        item_ids=np.asarray(["[PAD]"] + [f"i{i}" for i in range(1, num_items + 1)]),
        item_table=pd.DataFrame({"title": titles}),
        source={"reader": "toy"},
    )


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors gain nothing from threads; one thread avoids spin-wait contention.
    Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def toy_dataset() -> SequenceDataset:
    return make_toy_dataset()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set PADREC_DATA_DIR)")
    return SHARED_DATA
