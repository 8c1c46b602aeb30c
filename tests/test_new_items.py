"""New items from text alone in served methods: text adapters reproduce each representation,
new items get the vectors their text gives them, PAD's gate weighs them as coldest-bucket
items without the ID expert, ID-only methods refuse, and the factored score equals score_all."""

from __future__ import annotations

import pytest
import torch

from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.experiment import Prepared
from padrec.methods import METHODS, MethodContext
from padrec.methods.base import NewItemsUnsupported
from padrec.models.items.precomputed import PrecomputedItems

D = 16  # text width
DIM = 8  # d
L = 10

CASES = {
    "pad": ("pad", {"hidden_size": DIM, "backbone_config": {"num_layers": 1}}),
    "morec": ("sequential", {"hidden_size": DIM, "items": "text"}),
    "hybrid": ("sequential", {"hidden_size": DIM, "items": "hybrid"}),
    "faerec_gated": ("sequential", {"hidden_size": DIM, "items": "faerec_gated"}),
    "faerec": ("faerec", {"hidden_size": DIM}),
    "faerec_lrurec": ("faerec", {"hidden_size": DIM, "backbone": "lrurec"}),
}


@pytest.fixture
def prepared(toy_dataset) -> Prepared:
    g = torch.Generator().manual_seed(0)
    text = torch.randn(toy_dataset.num_items + 1, D, generator=g)
    text[0] = 0
    split = make_split(toy_dataset, SplitConfig(max_len=L))
    return Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, text, {})


def served(prepared: Prepared, case: str):
    name, cfg = CASES[case]
    torch.manual_seed(0)
    ctx = MethodContext(prepared.dataset.num_items, L, prepared.stats, prepared.text_embeddings)
    method = METHODS.build(name, cfg, context=ctx)
    method.set_phase(method.phases()[-1].name)
    with torch.no_grad():  # move every parameter off its initial value (zero biases, identity LNs)
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    method.eval()
    return method.for_serving()


def histories(prepared: Prepared, n: int = 6) -> torch.Tensor:
    return torch.as_tensor(prepared.split.test.histories[:n])


@pytest.mark.parametrize("case", sorted(CASES))
def test_score_factors_equal_score_all(prepared, case):
    m = served(prepared, case)
    f = m.score_factors()
    assert f is not None
    h = histories(prepared)
    with torch.no_grad():
        want = m.score_all(h)
        got = f.query(h) @ f.items.t()
        assert torch.allclose(got[:, 1:], want[:, 1:], atol=1e-5)
        parts = m.score_parts(h)
        assert set(parts) == set(f.parts)
        q = f.query(h)
        for name, cols in f.parts.items():
            assert torch.allclose(q[:, cols] @ f.items[:, cols].t(), parts[name], atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_text_gives_the_same_vectors(prepared, case):
    """Re-setting existing items to their own text reproduces every table row: the adapters
    compute what the representations computed."""
    m = served(prepared, case)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    h = histories(prepared)
    with torch.no_grad():
        scores = m.score_all(h)
        ids = torch.arange(1, m.num_items + 1)
        m.add_items(ids, prepared.text_embeddings[ids])
        assert m.num_items == prepared.dataset.num_items
        for k, v in m.state_dict().items():
            assert torch.allclose(v, before[k], atol=1e-5), k
        assert torch.allclose(m.score_all(h), scores, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_new_items_are_ranked_from_their_text(prepared, case):
    m = served(prepared, case)
    n = m.num_items
    h = histories(prepared)
    with torch.no_grad():
        old = m.score_all(h)
        # two new items whose text copies two existing items'
        src = torch.tensor([3, 7])
        m.add_items(torch.tensor([n + 1, n + 2]), prepared.text_embeddings[src])
        new = m.score_all(h)
    assert m.num_items == n + 2 and new.shape == (h.shape[0], n + 3)
    assert torch.allclose(new[:, 1 : n + 1], old[:, 1:], atol=1e-5)  # old items unchanged
    assert torch.isfinite(new[:, n + 1 :]).all() and (new[:, n + 1 :] != 0).any()
    f = m.score_factors()
    assert torch.allclose((f.query(h) @ f.items.t())[:, 1:], new[:, 1:], atol=1e-5)
    some = torch.tensor([1, n, n + 1, n + 2])
    assert torch.allclose(f.rows(some), f.items[some], atol=1e-6)  # the rows serving recomputes
    # a history holding a new item runs
    h2 = h.clone()
    h2[:, -1] = n + 1
    with torch.no_grad():
        assert torch.isfinite(m.score_all(h2)[:, 1:]).all()


def test_new_item_vectors_are_the_text_path_with_zero_id(prepared):
    """MoRec: a new item with an existing item's text gets exactly that item's vector."""
    m = served(prepared, "morec")
    n = m.num_items
    m.add_items(torch.tensor([n + 1]), prepared.text_embeddings[[5]])
    table = m.expert.items.table
    assert torch.allclose(table[n + 1], table[5], atol=1e-6)


def test_pad_gate_of_new_items(prepared):
    m = served(prepared, "pad")
    n = m.num_items
    m.add_items(torch.tensor([n + 1]), prepared.text_embeddings[[2]])
    w = m.serving_gate[n + 1]
    experts = list(m.config.experts)
    assert w[experts.index("id")] == 0 and torch.isclose(w.sum(), torch.tensor(1.0))
    # the text experts keep their coldest-bucket proportions
    coldest = torch.as_tensor(prepared.stats.bucket) == prepared.stats.num_buckets
    cold = m.serving_gate[: n + 1][coldest][0]
    text_idx = [experts.index(e) for e in experts if e != "id"]
    ratio = cold[text_idx] / cold[text_idx].sum()
    assert torch.allclose(w[text_idx], ratio, atol=1e-6)
    assert not m.expert("id").items.reads_text and m.expert("llm").items.reads_text


def test_id_only_methods_refuse_new_items(prepared):
    torch.manual_seed(0)
    ctx = MethodContext(prepared.dataset.num_items, L, prepared.stats, None)
    m = METHODS.build("sequential", {"hidden_size": DIM}, context=ctx).eval().for_serving()
    assert "cannot rank items it was not trained on" in m.new_items_unsupported()
    with pytest.raises(NewItemsUnsupported):
        m.add_items(torch.tensor([m.num_items + 1]), torch.zeros(1, D))


def test_add_items_checks_ids(prepared):
    m = served(prepared, "morec")
    n = m.num_items
    with pytest.raises(ValueError, match="no gap"):
        m.add_items(torch.tensor([n + 2]), torch.zeros(1, D))
    with pytest.raises(ValueError, match="distinct"):
        m.add_items(torch.tensor([n + 1, n + 1]), torch.zeros(2, D))
    assert all(isinstance(t, PrecomputedItems) for t in m.item_tables())
