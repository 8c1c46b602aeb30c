"""LLM-ESR: the two item views, cross-view attention and the self-distillation loss against naive
formulas, the method's losses, the similar-user retrieval from training windows, causality,
backbones, end-to-end training, determinism and serving (new items from text)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.experiment import Prepared, load_experiment_config, run_experiment
from padrec.losses.llm_esr import self_distillation_loss
from padrec.losses.ranking import sample_negatives
from padrec.methods import METHODS, MethodContext
from padrec.methods.batches import BatchSettings
from padrec.methods.llm_esr import SimilarUserBatch, SimilarUsers
from padrec.methods.llm_esr.retrieval import similar_users, user_text_embeddings, user_windows
from padrec.models.items.llm_esr import DualViewItems
from padrec.models.llm_esr import CrossViewAttention

pytestmark = pytest.mark.usefixtures("single_thread")

L, D, DIM = 10, 12, 8


@pytest.fixture
def text(toy_dataset) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(toy_dataset.num_items + 1, D, generator=g)
    t[0] = 0
    return t


@pytest.fixture
def prepared(toy_dataset, text) -> Prepared:
    split = make_split(toy_dataset, SplitConfig(max_len=L))
    return Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, text, {})


def build(prepared: Prepared, **cfg):
    torch.manual_seed(0)
    ctx = MethodContext(prepared.dataset.num_items, L, prepared.stats, prepared.text_embeddings)
    return METHODS.build("llm_esr", {"hidden_size": DIM, **cfg}, context=ctx)


def first_batch(method, prepared: Prepared, size: int = 16) -> SimilarUserBatch:
    batches = method.current_phase.batches(prepared.split, BatchSettings(size))
    return next(iter(batches.epoch(torch.Generator().manual_seed(0))))[0]


# --- item views ----------------------------------------------------------------------------
def test_dual_view_items_are_pca_ids_and_adapted_text(text):
    items = DualViewItems(text, DIM)
    want = PCA(n_components=DIM, svd_solver="full").fit_transform(text[1:].double().numpy())
    assert np.allclose(items.ids.all().detach()[1:].numpy(), want, atol=1e-5)
    a, b = items.adapter
    assert a.weight.shape == (D // 2, D) and b.weight.shape == (DIM, D // 2)
    with torch.no_grad():
        table = items.all()
        assert table.shape == (text.shape[0], 2 * DIM) and table[0].abs().sum() == 0
        assert torch.allclose(table[1:, DIM:], b(a(text[1:])), atol=1e-6)  # no activation between
        ids = torch.tensor([[0, 3, 7]])
        assert torch.allclose(items(ids), table[ids])


# --- cross-view attention --------------------------------------------------------------------
def naive_cross_attention(att: CrossViewAttention, x, y, pad):
    B, Lx, d = x.shape
    h = d // att.heads
    out = torch.zeros(B, Lx, d)
    for b in range(B):
        for t in range(Lx):
            if pad[b, t]:
                continue
            heads = []
            for k in range(att.heads):
                sl = slice(k * h, (k + 1) * h)
                q = (att.q.weight @ x[b, t])[sl]
                keys = [s for s in range(t + 1 if att.causal else Lx) if not pad[b, s]]
                scores = torch.stack([q @ (att.k.weight @ y[b, s])[sl] / math.sqrt(h) for s in keys])
                w = torch.softmax(scores, 0)
                heads.append(sum(w[i] * (att.v.weight @ y[b, s])[sl] for i, s in enumerate(keys)))
            out[b, t] = att.out(torch.cat(heads))
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_cross_view_attention_against_a_naive_loop(causal):
    torch.manual_seed(0)
    att = CrossViewAttention(DIM, 2, causal)
    x, y = torch.randn(2, 5, DIM), torch.randn(2, 5, DIM)
    pad = torch.tensor([[True, True, False, False, False], [False] * 5])
    with torch.no_grad():
        assert torch.allclose(att(x, y, pad), naive_cross_attention(att, x, y, pad), atol=1e-5)


# --- losses ------------------------------------------------------------------------------------
def test_self_distillation_loss_against_a_naive_formula():
    g = torch.Generator().manual_seed(1)
    u, sim = torch.randn(4, 6, generator=g), torch.randn(4, 3, 6, generator=g)
    want = sum(float(((u[b] - sim[b].mean(0)) ** 2).sum()) for b in range(4)) / (4 * 6)
    assert float(self_distillation_loss(u, sim)) == pytest.approx(want, rel=1e-6)
    mask = torch.tensor([True, False, True, False])
    want = sum(float(((u[b] - sim[b].mean(0)) ** 2).sum()) for b in (0, 2)) / (2 * 6)
    assert float(self_distillation_loss(u, sim, mask)) == pytest.approx(want, rel=1e-6)
    sim.requires_grad_()
    self_distillation_loss(u.requires_grad_(), sim).backward()
    assert sim.grad is None and u.grad.abs().sum() > 0  # teachers are detached


def test_method_losses_are_the_paper_formulas(prepared):
    m = build(prepared).eval()  # no dropout: the losses are deterministic functions
    batch = first_batch(m, prepared)
    torch.manual_seed(5)
    with torch.no_grad():
        got = m.losses(batch)
        torch.manual_seed(5)
        h = m.model.encode(batch.inputs)
        neg = sample_negatives(batch.inputs, batch.targets, m.num_items, 1)
        table = m.model.items.all()
        terms = []
        for b, t in zip(*torch.nonzero(batch.targets).t().tolist()):
            pos = float(h[b, t] @ table[batch.targets[b, t]])
            ng = float(h[b, t] @ table[neg[b, t, 0]])
            sigmoid = 1 / (1 + math.exp(-pos)), 1 / (1 + math.exp(-ng))  # in double precision
            terms.append(-math.log(sigmoid[0]) - math.log(1 - sigmoid[1]))
        assert float(got["rec"]) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
        B, K, _ = batch.similar.shape
        teacher = torch.stack([m.model.user_vector(batch.similar[b]).mean(0) for b in range(B)])
        want = 0.1 * float(((h[:, -1] - teacher) ** 2).mean())
        assert float(got["distill"]) == pytest.approx(want, rel=1e-5)
    ce = build(prepared, loss="ce").eval()
    with torch.no_grad():
        h = ce.model.encode(batch.inputs)
        mask = batch.targets > 0
        logits = h[mask] @ ce.model.items.all()[1:].t()
        want = F.cross_entropy(logits, batch.targets[mask] - 1)
        assert float(ce.losses(batch)["rec"]) == pytest.approx(float(want), rel=1e-5)
    assert set(build(prepared, distill=False).losses(batch)) == {"rec"}
    assert build(prepared, distill=False).current_phase.batches is None


# --- retrieval -------------------------------------------------------------------------------
def test_user_vectors_read_training_items_only(prepared, toy_dataset, text):
    users, windows, last = user_windows(prepared.split)
    vectors = user_text_embeddings(windows, last, text)
    for row, u in enumerate(users[:20]):
        part = toy_dataset.sequences[u][:-2][-(L + 1) :]  # training part within the window
        assert torch.allclose(vectors[row], text[torch.as_tensor(part)].mean(0), atol=1e-5)
    unit = F.normalize(vectors, dim=-1)
    sims = (unit @ unit.t()).fill_diagonal_(-math.inf)
    want = torch.argsort(sims, dim=1, descending=True)[:, :10]
    got = similar_users(vectors, 10, chunk=7)  # chunks give the same rows
    assert torch.allclose(sims.gather(1, got), sims.gather(1, want))  # the toy data has exact ties
    assert not (got == torch.arange(len(users)).unsqueeze(1)).any()
    retrieval = SimilarUsers.from_split(prepared.split, text, 10)
    hist = retrieval.histories(torch.as_tensor(users[:3]))
    assert torch.equal(hist, torch.from_numpy(windows)[similar_users(vectors, 10)[:3]])
    assert retrieval.histories(torch.tensor([-1])).abs().sum() == 0


def test_batches_carry_similar_users_and_distill_only_known_ones(prepared):
    m = build(prepared)
    batch = first_batch(m, prepared)
    assert isinstance(batch, SimilarUserBatch) and batch.similar.shape == (16, 10, L)
    assert batch.to("cpu").similar.shape == batch.similar.shape
    batch.similar[:] = 0  # no known similar user: the term is 0
    assert float(m.losses(batch)["distill"].detach()) == 0.0


# --- causality, backbones, determinism ----------------------------------------------------------
@pytest.mark.parametrize("embed", [False, True])
def test_the_dual_view_encoder_does_not_look_ahead(prepared, embed):
    m = build(prepared, embed_before_cross=embed).eval()
    h = torch.as_tensor(prepared.split.test.histories[:4])
    changed = h.clone()
    changed[:, -3:] = torch.randint(1, m.num_items + 1, (4, 3))
    with torch.no_grad():
        assert torch.allclose(m.model.encode(h)[:, :-3], m.model.encode(changed)[:, :-3], atol=1e-6)


def test_embedding_before_cross_attention_follows_the_release(prepared):
    m = build(prepared, embed_before_cross=True, embed_dropout=0.3).eval()
    embed, backbone = m.model.embed, m.model.backbone
    assert backbone.position is None and backbone.input_scale == 1.0 and backbone.input_dropout.p == 0.0
    assert embed.dropout.p == 0.3 and embed.position.weight.shape == (L, DIM)
    assert build(prepared, embed_before_cross=True).model.embed.dropout.p == backbone.config.dropout
    assert build(prepared).model.embed is None and build(prepared).model.backbone.position is not None
    h = torch.as_tensor(prepared.split.test.histories[:3])
    with torch.no_grad():
        both = m.model.items.history(h)
        e, m_view = m.model.views(h)
        want_e = both[..., :DIM] * math.sqrt(DIM) + embed.position.weight  # window L: every position
        pad = (h == 0).unsqueeze(-1)
        assert torch.allclose(
            e, m.model.llm2id(both[..., DIM:] * math.sqrt(DIM) + embed.position.weight, want_e, h == 0)
        )
        assert torch.allclose(m_view.masked_fill(pad, 0), m_view)
    with pytest.raises(ValueError, match="position table"):
        build(prepared, backbone="gru4rec", embed_before_cross=True)
    with pytest.raises(ValueError, match="embed_dropout"):
        build(prepared, embed_dropout=1.0)


def test_the_release_cross_mask_looks_ahead_and_needs_prefix_examples(prepared):
    m = build(prepared, cross_mask="padding").eval()
    h = torch.as_tensor(prepared.split.test.histories[:4])
    changed = h.clone()
    changed[:, -1] = h[:, -1] % m.num_items + 1
    with torch.no_grad():
        before, after = m.model.encode(h)[:, :-1], m.model.encode(changed)[:, :-1]
    assert not torch.allclose(before, after, atol=1e-4)  # earlier positions see the last item
    assert not type(m).causal(m.config) and type(m).causal(build(prepared).config)
    cfg = {"method": "llm_esr", "data": {"format": "builtin", "name": "prime_pantry"}}
    cfg["method_config"] = {"cross_mask": "padding"}
    assert load_experiment_config(dict(cfg)).split.train_examples == "prefixes"
    with pytest.raises(Exception, match="look"):
        load_experiment_config({**cfg, "split": {"train_examples": "shifted"}})
    release = load_experiment_config({**cfg, "split": {"train_examples": "shifted", "allow_look_ahead": True}})
    assert release.split.train_examples == "shifted"
    with pytest.raises(ValueError, match="cross_mask"):
        build(prepared, cross_mask="none")


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("cross", [True, False])
def test_builds_and_trains_on_backbones(prepared, backbone, cross):
    m = build(prepared, backbone=backbone, cross_attention=cross)
    losses = m.losses(first_batch(m, prepared))
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    items = m.model.items
    assert items.ids.embedding.weight.grad.abs().sum() > 0 and items.adapter[0].weight.grad.abs().sum() > 0
    if cross:
        assert m.model.llm2id.q.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        assert m.score_all(torch.as_tensor(prepared.split.test.histories[:3])).shape == (3, m.num_items + 1)


def test_same_seed_same_numbers(prepared):
    out = []
    for _ in range(2):
        m = build(prepared)
        batch = first_batch(m, prepared)
        torch.manual_seed(1)
        out.append({k: float(v.detach()) for k, v in m.losses(batch).items()})
    assert out[0] == out[1]


# --- end to end and serving -------------------------------------------------------------------
def test_end_to_end_training_and_serving(tmp_path, prepared, text):
    cfg = load_experiment_config(
        {
            "name": "t",
            "output_dir": str(tmp_path / "run"),
            "method": "llm_esr",
            "method_config": {"hidden_size": 16, "backbone_config": {"dropout": 0.1}, "loss": "ce"},
            "split": {"max_len": L},
            "stats": {"num_buckets": 4},
            "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "progress": False, "monitor": "NDCG@5"},
            "eval": {"ks": [5]},
        }
    )
    res = run_experiment(cfg, prepared)
    hist = res["phases"][0]["history"]
    for row in hist:
        assert math.isfinite(row["loss_rec"]) and math.isfinite(row["loss_distill"])
    assert hist[-1]["loss_rec"] < hist[0]["loss_rec"]
    assert res["test"]["overall"]["NDCG@5"] > 0.1  # random ranking: about 0.05
    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "run")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5

    m = build(prepared).eval()
    h = torch.as_tensor(prepared.split.test.histories[:6])
    with torch.no_grad():
        scores = m.score_all(h)
        served = m.for_serving()
        assert torch.allclose(served.score_all(h), scores, atol=1e-5)
        parts = served.score_parts(h)
        assert torch.allclose(parts["id"] + parts["llm"], scores, atol=1e-5)
        factors = served.score_factors()
        assert torch.allclose(factors.query(h) @ factors.items.t(), scores, atol=1e-5)
        # a new item from text: semantic half from the adapter, collaborative half zero
        n = m.num_items
        served.add_items(torch.tensor([n + 1]), text[5:6])
        row = served.model.items.all()[n + 1]
        assert torch.allclose(row[DIM:], m.model.items.adapter(text[5]), atol=1e-6) and row[:DIM].abs().sum() == 0
        assert served.score_all(h).shape == (6, n + 2)
