"""CPU threads shared out between padrec jobs: slots, stale slots, re-balancing, training."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from padrec.training import threads


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("PADREC_JOBS_DIR", str(tmp_path / "jobs"))
    threads.release()
    saved = torch.get_num_threads()
    yield tmp_path / "jobs"
    threads.release()
    torch.set_num_threads(saved)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_fair_share_counts_live_jobs_and_drops_stale_slots(jobs):
    slot = threads.JobSlot(cores=4, interval=0)
    assert slot.live_jobs() == 1 and slot.fair_threads() == 4
    (jobs / f"{os.getppid()}.job").write_text("x")  # a live process: another job
    stale = jobs / f"{dead_pid()}.job"
    stale.write_text("x")
    (jobs / "not-a-pid.job").write_text("x")
    assert slot.live_jobs() == 2 and slot.fair_threads() == 2
    assert not stale.exists()
    for pid in (os.getppid(), 1):  # four jobs on four cores: one thread each
        (jobs / f"{pid}.job").write_text("x")
    (jobs / f"{os.getpid() + 100000}.job").write_text("x")
    assert slot.fair_threads() >= 1
    slot.close()
    assert not slot.path.exists()


def test_refresh_rebalances_at_most_every_interval(jobs):
    slot = threads.JobSlot(cores=2, interval=3600)
    assert slot.refresh(force=True) == 2 and torch.get_num_threads() == 2
    other = jobs / f"{os.getppid()}.job"
    other.write_text("x")
    assert slot.refresh() == 2  # within the interval: not re-read
    assert slot.refresh(force=True) == 1 and torch.get_num_threads() == 1
    other.unlink()
    assert slot.refresh(force=True) == 2
    slot.close()


def test_training_with_auto_threads_takes_a_slot_and_explicit_threads_do_not(jobs, tmp_path, toy_dataset):
    from padrec.data import compute_item_stats, make_split
    from padrec.experiment import Prepared, load_experiment_config, run_experiment

    (jobs).mkdir(parents=True, exist_ok=True)
    (jobs / f"{os.getppid()}.job").write_text("x")  # one other job running

    def run(num_threads: int, out: str) -> dict:
        cfg = load_experiment_config(
            {
                "output_dir": str(tmp_path / out),
                "method_config": {"backbone": "gru4rec", "hidden_size": 8},
                "split": {"max_len": 8},
                "stats": {"num_buckets": 4},
                "train": {
                    "epochs": 2,
                    "batch_size": 64,
                    "progress": False,
                    "num_threads": num_threads,
                    "seed": 3,
                    "monitor": "NDCG@5",
                },
                "eval": {"ks": [5]},
            }
        )
        split = make_split(toy_dataset, cfg.split)
        return run_experiment(cfg, Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, None, {}))

    auto = run(0, "auto")
    slot = threads.current_slot()
    assert slot is not None and slot.path.exists()
    shared = max(1, threads.usable_cores() // 2)
    assert torch.get_num_threads() == shared
    explicit = run(shared + 1, "explicit")
    assert threads.current_slot() is None and not slot.path.exists()
    assert torch.get_num_threads() == shared + 1
    # another thread count does not change the numbers (same seed, same data, same device)
    assert [h["loss_rec"] for h in auto["phases"][0]["history"]] == [
        h["loss_rec"] for h in explicit["phases"][0]["history"]
    ]
