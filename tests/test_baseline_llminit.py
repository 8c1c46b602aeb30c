"""LLMInit: the ID table starts from PCA of the text (or the text itself), the loss is the
backbone's usual one, text is not used afterwards, and the method trains and serves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_llminit_rlmrec import (
    DIM,
    TEXT_DIM,
    assert_serving_matches,
    batch_of,
    build,
    loss_history,
    run_toy,
    toy_prepared,
)
from sklearn.decomposition import PCA

from padrec.config import ConfigError
from padrec.experiment import load_experiment_config
from padrec.losses.ranking import sample_negatives
from padrec.methods.llminit import initial_table

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def prepared(toy_dataset):
    return toy_prepared(toy_dataset)


def test_pca_initialisation_equals_sklearn(prepared):
    m = build("llminit", prepared)
    text = prepared.text_embeddings
    want = PCA(n_components=DIM, svd_solver="full").fit_transform(text[1:].double().numpy())
    got = m.expert.items.all().detach()
    assert torch.all(got[0] == 0)
    assert np.allclose(got[1:].numpy(), want, atol=1e-5)
    assert m.item_embeddings()["id"].shape == (prepared.dataset.num_items + 1, DIM)


def test_reduction_none_copies_the_text_and_needs_d_equal_to_D(prepared):
    m = build("llminit", prepared, reduction="none", hidden_size=TEXT_DIM)
    assert torch.equal(m.expert.items.all().detach()[1:], prepared.text_embeddings[1:])
    assert torch.all(m.expert.items.all()[0] == 0)
    with pytest.raises(ValueError, match="hidden_size must equal the text width"):
        build("llminit", prepared, reduction="none")
    with pytest.raises(ValueError, match="unknown reduction"):
        initial_table(prepared.text_embeddings, DIM, "svd")
    with pytest.raises(ConfigError, match="reduction"):
        build("llminit", prepared, reduction="linear")


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_rec_loss_matches_a_naive_formula(prepared, loss):
    m = build("llminit", prepared, loss=loss).eval()  # no dropout
    b = batch_of(prepared, 4)
    torch.manual_seed(3)
    with torch.no_grad():
        got = m.losses(b)
    assert set(got) == {"rec"}
    with torch.no_grad():
        h = m.expert.encode(b.inputs)
        E = m.expert.items.all().detach()
        torch.manual_seed(3)
        neg = sample_negatives(b.inputs, b.targets, prepared.dataset.num_items, 1)
    terms = []
    for i in range(b.inputs.shape[0]):
        for t in range(b.inputs.shape[1]):
            y = int(b.targets[i, t])
            if y == 0:
                continue
            if loss == "bce":
                pos = float(h[i, t] @ E[y])
                ng = float(h[i, t] @ E[int(neg[i, t, 0])])
                terms.append(-math.log(1 / (1 + math.exp(-pos))) - math.log(1 - 1 / (1 + math.exp(-ng))))
            else:
                logits = [float(h[i, t] @ E[j]) for j in range(1, prepared.dataset.num_items + 1)]
                top = max(logits)
                lse = top + math.log(sum(math.exp(v - top) for v in logits))
                terms.append(lse - logits[y - 1])
    assert float(got["rec"]) == pytest.approx(sum(terms) / len(terms), rel=1e-4)


def test_text_is_not_used_after_initialisation(prepared):
    m = build("llminit", prepared)
    text = prepared.text_embeddings
    assert not any(t.shape == text.shape for t in [*m.buffers(), *m.parameters()])
    b = batch_of(prepared, 8)
    m.eval()
    before = m.score_all(b.inputs).detach()
    text.mul_(-3.0)  # the method holds no reference to the text
    try:
        assert torch.equal(m.score_all(b.inputs).detach(), before)
    finally:
        text.div_(-3.0)
    served = m.for_serving()
    assert served.new_items_unsupported() is not None  # an ID model once trained


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "fmlprec"])
def test_builds_and_trains_on_backbones(prepared, backbone):
    m = build("llminit", prepared, backbone=backbone)
    m.train()
    total = sum(m.losses(batch_of(prepared, 8)).values())
    assert torch.isfinite(total)
    total.backward()
    assert m.expert.items.embedding.weight.grad.abs().sum() > 0
    assert_serving_matches(m, prepared, 3)


def test_end_to_end_beats_random_is_deterministic_and_serves(tmp_path, prepared):
    res = run_toy("llminit", prepared, tmp_path / "a")
    hist = loss_history(res)
    assert all(math.isfinite(v) for row in hist for v in row.values())
    assert res["test"]["overall"]["NDCG@5"] > 0.05  # random: about 5/40 hits spread over ranks
    again = run_toy("llminit", prepared, tmp_path / "b")
    assert loss_history(again) == hist
    assert again["test"]["overall"] == res["test"]["overall"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "a")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5


def test_shipped_config_loads():
    from pathlib import Path

    from padrec.commands.train import build_config_dict

    path = Path(__file__).resolve().parents[1] / "configs" / "llminit.yaml"
    cfg = load_experiment_config(build_config_dict(path, {}, []))
    assert cfg.method == "llminit" and cfg.method_config["reduction"] == "pca"
    assert cfg.method_config["hidden_size"] == 64 and cfg.split.max_len == 20


def test_naive_pca_helper_agrees_with_torch_projection(prepared):
    """PCA = centred text times the top-d right singular vectors (up to each column's sign)."""
    text = prepared.text_embeddings[1:].double()
    centred = text - text.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    proj = (centred @ vh[:DIM].T).float()
    table = initial_table(prepared.text_embeddings, DIM, "pca")[1:]
    cos = F.cosine_similarity(proj, table, dim=0).abs()
    assert torch.allclose(cos, torch.ones(DIM), atol=1e-4)
