"""Trainer: learning, early stopping, best-model restore, resume, phase reuse, determinism."""

from __future__ import annotations

import json

import pytest
import torch

from padrec.data import compute_item_stats, make_split
from padrec.evaluation import EvalConfig
from padrec.methods import METHODS, MethodContext
from padrec.training.checkpoint import load_weights, save_weights
from padrec.training.trainer import TrainConfig, Trainer, set_seed


def build(toy_dataset, loss="ce", backbone="sasrec", seed=0):
    split = make_split(toy_dataset)
    ctx = MethodContext(toy_dataset.num_items, split.config.max_len, compute_item_stats(toy_dataset))
    set_seed(seed)
    method = METHODS.build(
        "sequential",
        {"loss": loss, "backbone": backbone, "hidden_size": 32, "backbone_config": {"dropout": 0.1}},
        context=ctx,
    )
    return method, split


def fit(method, split, tmp_path, **kw):
    cfg = TrainConfig(**{"epochs": 4, "batch_size": 32, "lr": 5e-3, "progress": False, "seed": 0, **kw})
    return Trainer(method, split, cfg, EvalConfig(ks=[10])).fit("train", tmp_path / "train", "fp")


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_training_learns_the_chain(toy_dataset, tmp_path, loss):
    method, split = build(toy_dataset, loss)
    res = fit(method, split, tmp_path, epochs=8)
    # Popularity is ~uniform here (HR@10 ≈ 10/40); the chain makes the next item predictable.
    assert res.best_value > 0.35
    assert res.history[-1]["loss_rec"] < res.history[0]["loss_rec"]


def test_best_model_is_restored_and_checkpoints_are_safetensors(toy_dataset, tmp_path):
    method, split = build(toy_dataset)
    res = fit(method, split, tmp_path, epochs=3)
    best = {k: v.clone() for k, v in method.state_dict().items()}
    other, _ = build(toy_dataset, seed=5)
    load_weights(other, tmp_path / "train" / "best.safetensors")
    for k, v in other.state_dict().items():
        assert torch.equal(v, best[k]), k
    state = json.loads((tmp_path / "train" / "state.json").read_text())
    assert state["finished"] and state["best_epoch"] + 1 == res.best_epoch
    assert not list((tmp_path / "train").glob("last*"))


def test_same_seed_same_numbers(toy_dataset, tmp_path):
    a, split = build(toy_dataset, loss="bce")
    b, _ = build(toy_dataset, loss="bce")
    ra = fit(a, split, tmp_path / "a", epochs=2)
    rb = fit(b, split, tmp_path / "b", epochs=2)
    assert [h["loss_rec"] for h in ra.history] == [h["loss_rec"] for h in rb.history]
    assert ra.best_value == rb.best_value


def test_interrupted_training_resumes_to_the_same_result(toy_dataset, tmp_path):
    full, split = build(toy_dataset, loss="bce")
    ref = fit(full, split, tmp_path / "ref", epochs=4, patience=100)

    part, _ = build(toy_dataset, loss="bce")
    trainer = Trainer(
        part,
        split,
        TrainConfig(epochs=4, batch_size=32, lr=5e-3, progress=False, seed=0, patience=100),
        EvalConfig(ks=[10]),
    )
    # Simulate a crash after epoch 2: run 2 epochs, then mark the phase unfinished with its last state.
    calls = {"n": 0}
    original = trainer.validate

    def crash_after_two(eval_set):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(eval_set)

    trainer.validate = crash_after_two
    with pytest.raises(KeyboardInterrupt):
        trainer.fit("train", tmp_path / "resume" / "train", "fp")
    state = json.loads((tmp_path / "resume" / "train" / "state.json").read_text())
    assert state["last"] == "last-0002" and (tmp_path / "resume" / "train" / "last-0002" / "optim.safetensors").exists()

    fresh, _ = build(toy_dataset, loss="bce", seed=9)
    res = Trainer(fresh, split, trainer.config, EvalConfig(ks=[10])).fit("train", tmp_path / "resume" / "train", "fp")
    assert [round(h["loss_rec"], 6) for h in res.history] == [round(h["loss_rec"], 6) for h in ref.history]
    assert res.best_value == pytest.approx(ref.best_value)


def test_finished_phase_is_reused_and_changed_inputs_retrain(toy_dataset, tmp_path):
    method, split = build(toy_dataset)
    fit(method, split, tmp_path, epochs=2)
    again, _ = build(toy_dataset, seed=3)
    res = fit(again, split, tmp_path, epochs=2)
    assert res.stopped == "reused"
    for (k, v), (_, w) in zip(method.state_dict().items(), again.state_dict().items()):
        assert torch.equal(v, w), k
    changed, _ = build(toy_dataset, seed=3)
    cfg = TrainConfig(epochs=1, batch_size=32, progress=False)
    res = Trainer(changed, split, cfg, EvalConfig(ks=[10])).fit("train", tmp_path / "train", "other-fp")
    assert res.stopped != "reused"


def test_early_stopping_stops_on_patience(toy_dataset, tmp_path):
    method, split = build(toy_dataset)
    res = fit(method, split, tmp_path, epochs=50, lr=1e-12, patience=2)  # too small to change a ranking
    assert res.stopped == "patience" and res.epochs_run == 3


def test_weights_round_trip(toy_dataset, tmp_path):
    method, split = build(toy_dataset, backbone="gru4rec")
    method.eval()
    save_weights(method, tmp_path / "m.safetensors", {"note": "x"})
    other, _ = build(toy_dataset, backbone="gru4rec", seed=4)
    other.eval()
    load_weights(other, tmp_path / "m.safetensors")
    h = torch.from_numpy(split.test.histories[:8])
    assert torch.allclose(method.score_all(h), other.score_all(h))
    assert json.loads((tmp_path / "m.json").read_text()) == {"note": "x"}


def test_validate_from_trains_blind_then_selects_and_stops_from_there(toy_dataset, tmp_path):
    """FAERec's release rule: no validation before ``validate_from``; best and patience from it."""
    method, split = build(toy_dataset, loss="bce")
    res = fit(method, split, tmp_path, epochs=9, validate_from=5, patience=2)
    rows = res.history
    assert all("valid_NDCG@10" not in r for r in rows[:4])
    assert all("valid_NDCG@10" in r for r in rows[4:])
    assert res.best_epoch >= 5
    validated = [r["valid_NDCG@10"] for r in rows[4:]]
    assert res.best_value == max(validated)
    if res.stopped == "patience":  # two validations without improvement after the best
        assert len(rows) == res.best_epoch + 2


def test_validate_from_with_a_time_stop_before_it_still_returns_a_validated_model(toy_dataset, tmp_path):
    method, split = build(toy_dataset, loss="bce")
    res = fit(method, split, tmp_path, epochs=50, validate_from=40, max_minutes=1e-6)
    assert res.stopped == "time" and res.best_epoch == 1
    assert "valid_NDCG@10" in res.history[-1]
    assert (tmp_path / "train" / "best.safetensors").exists()


def test_validate_from_must_lie_within_the_epochs():
    with pytest.raises(ValueError, match="validate_from"):
        TrainConfig(epochs=10, validate_from=11)


@pytest.mark.parametrize("monitor", ["NDCG@10", "Coverage@10"])
def test_validation_keeps_top_k_lists_only_for_a_coverage_monitor(toy_dataset, monitor):
    method, split = build(toy_dataset)
    cfg = TrainConfig(epochs=1, progress=False, monitor=monitor)
    trainer = Trainer(method, split, cfg, EvalConfig(ks=[10]))
    res = trainer.validate(trainer.validation_set())
    full = Trainer(method, split, TrainConfig(epochs=1, progress=False), EvalConfig(ks=[10]))
    assert (res.topk is None) == (monitor == "NDCG@10")
    assert res.main() > 0 and res.overall == full.validate(full.validation_set()).overall
