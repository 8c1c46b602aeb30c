"""DisCo: CLUB, its q fit and the InfoMax critic against their formulas, the dual-side attention
against a loop, causality, the method's losses and switches, two backbones, end-to-end training,
determinism, serving and new items."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pad_baseline_helpers import (
    assert_config_valid,
    assert_serving_matches,
    batch_of,
    build,
    losses_of,
    run_toy,
    toy_prepared,
)

from padrec.losses.disco import BilinearCritic, CLUBEstimator, club_upper_bound, gaussian_log_likelihood, infomax_bce
from padrec.methods.disco.network import DualSideAttention

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def prepared(toy_dataset):
    return toy_prepared(toy_dataset)


# --- the losses --------------------------------------------------------------------------
def test_club_bound_is_the_log_ratio_of_gaussian_densities():
    g = torch.Generator().manual_seed(0)
    mu, logvar, y = torch.randn(6, 3, generator=g), 0.5 * torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    q = [torch.distributions.Normal(mu[i], torch.exp(0.5 * logvar[i])) for i in range(6)]
    want = sum(
        float(q[i].log_prob(y[i]).sum()) - sum(float(q[i].log_prob(y[j]).sum()) for j in range(6)) / 6 for i in range(6)
    )
    assert float(club_upper_bound(mu, logvar, y)) == pytest.approx(want / 6, rel=1e-5)
    assert float(club_upper_bound(mu[:0], logvar[:0], y[:0])) == 0.0
    loglik = sum(float((-((mu[i] - y[i]) ** 2) / logvar[i].exp() - logvar[i]).sum()) for i in range(6)) / 6
    assert float(gaussian_log_likelihood(mu, logvar, y)) == pytest.approx(loglik, rel=1e-5)


def test_club_bound_trains_the_encoders_and_fit_loss_trains_q_only():
    torch.manual_seed(0)
    club = CLUBEstimator(4, 3, 8)
    assert club.mu[0].out_features == 4 and isinstance(club.logvar[-1], torch.nn.Tanh)
    x = torch.randn(5, 4, requires_grad=True)
    y = torch.randn(5, 3, requires_grad=True)
    club.bound(x, y).backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in club.parameters())
    with torch.no_grad():
        mu, logvar = club(x)
        assert float(club.bound(x, y)) == pytest.approx(float(club_upper_bound(mu, logvar, y)))
    x.grad = None
    club.fit_loss(x, y).backward()
    assert x.grad is None and all(p.grad is not None for p in club.parameters())


def test_infomax_critic_and_bce_match_their_formulas():
    torch.manual_seed(0)
    critic = BilinearCritic(4, 3)
    assert torch.all(critic.bilinear.bias == 0)
    p, z = torch.randn(5, 4), torch.randn(5, 3)
    with torch.no_grad():
        want = torch.stack([p[i] @ critic.bilinear.weight[0] @ z[i] for i in range(5)])
        assert torch.allclose(critic(p, z), want, atol=1e-6)
    pos, neg = torch.randn(5), torch.randn(7)
    labels = torch.cat([torch.ones(5), torch.zeros(7)])
    want = F.binary_cross_entropy(torch.sigmoid(torch.cat([pos, neg])), labels)
    assert float(infomax_bce(pos, neg)) == pytest.approx(float(want), rel=1e-5)


# --- the dual-side attention -------------------------------------------------------------
def test_dual_side_attention_matches_a_loop():
    torch.manual_seed(0)
    d, D, L = 4, 6, 5
    att = DualSideAttention(d, D)
    e, x = torch.randn(2, L, d), torch.randn(2, L, D)
    pad = torch.tensor([[True, True, False, False, False], [False, False, False, False, False]])
    p = att.proj
    with torch.no_grad():
        out = att(e, x, pad)
        spec = {  # pattern: (query proj, query view/chunk, key proj, key view/chunk, value proj, value view/chunk)
            "c_intra": ("t_q", (x, 0), "c_k", (e, 0), "c_v", (e, 0)),
            "t_intra": ("c_q", (e, 0), "t_k", (x, 0), "t_v", (x, 0)),
            "c_inter": ("t_q_co", (x, 1), "t_k_co", (x, 1), "c_v_co", (e, 1)),
            "t_inter": ("c_q_co", (e, 1), "c_k_co", (e, 1), "t_v_co", (x, 1)),
        }
        for name, (qp, (qv, qc), kp, (kv, kc), vp, (vv, vc)) in spec.items():
            for b in range(2):
                for t in range(L):
                    if pad[b, t]:
                        assert torch.all(out[name][b, t] == 0)
                        continue
                    keys = [j for j in range(t + 1) if not pad[b, j]]
                    q = p[qp](qv[b, t].chunk(2)[qc])
                    s = torch.stack([q @ p[kp](kv[b, j].chunk(2)[kc]) for j in keys])
                    v = torch.stack([p[vp](vv[b, j].chunk(2)[vc]) for j in keys])
                    want = (torch.softmax(s, 0).unsqueeze(-1) * v).sum(0)
                    assert torch.allclose(out[name][b, t], want, atol=1e-5), (name, b, t)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_user_vectors_are_causal(prepared, backbone):
    m = build("disco", prepared, backbone=backbone).eval()
    h = torch.as_tensor(prepared.split.test.histories[:4]).clone()
    changed = h.clone()
    changed[:, -1] = (changed[:, -1] % prepared.dataset.num_items) + 1
    with torch.no_grad():
        u, _ = m.encode(h)
        v, _ = m.encode(changed)
    assert torch.allclose(u[:, :-1], v[:, :-1], atol=1e-5) and not torch.allclose(u[:, -1], v[:, -1])


# --- the method ----------------------------------------------------------------------------
def test_losses_and_their_switches(prepared):
    b = batch_of(prepared)
    m = build("disco", prepared).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        out = m.losses(b)
    assert set(out) == {"rec", "disentangle", "club_fit", "sufficiency"}
    with torch.no_grad():  # the regularisers on the positions with a target, by hand
        u, patterns = m.encode(b.inputs)
        valid = b.targets > 0
        slot = {k: v[valid] for k, v in patterns.items()}
        dis = sum(m.club[c].bound(slot[f"c_{c}"], slot[f"t_{c}"]) for c in ("intra", "inter"))
        assert float(out["disentangle"]) == pytest.approx(0.2 * float(dis), rel=1e-4)
        torch.manual_seed(0)
        from padrec.losses.ranking import sample_negatives

        neg = sample_negatives(b.inputs, b.targets, m.num_items, 1)[valid]
        e, x = m.items.views(b.targets[valid]), m.items.views(neg[:, 0])
        views = {"c_intra": (0, 0), "t_intra": (1, 0), "c_inter": (0, 1), "t_inter": (1, 1)}
        suf = 0.0
        for name, (view, chunk) in views.items():
            pos = m.critics[name](slot[name], e[view].chunk(2, -1)[chunk])
            negs = m.critics[name](slot[name], x[view].chunk(2, -1)[chunk])
            suf += float(infomax_bce(pos, negs))
        assert float(out["sufficiency"]) == pytest.approx(0.2 * suf, rel=1e-4)
        logits = u[valid] @ m.items.all().t()
        logits[:, 0] = -math.inf
        assert float(out["rec"]) == pytest.approx(float(F.cross_entropy(logits, b.targets[valid])), rel=1e-5)
    assert set(build("disco", prepared, disentanglement=False).losses(b)) == {"rec", "sufficiency"}
    assert set(build("disco", prepared, sufficiency=False).losses(b)) == {"rec", "disentangle", "club_fit"}
    assert set(build("disco", prepared, alpha=0.0, beta=0.0).losses(b)) == {"rec"}
    capped = build("disco", prepared, max_slots=5)
    assert torch.isfinite(sum(capped.losses(b).values()))


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "caser"])
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_builds_and_trains_on_backbones(prepared, backbone, loss):
    m = build("disco", prepared, backbone=backbone, loss=loss)
    m.train()
    total = sum(m.losses(batch_of(prepared, 8)).values())
    assert torch.isfinite(total)
    total.backward()
    assert m.attention.proj["t_q"].weight.grad.abs().sum() > 0
    assert m.items.candidate.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.club.parameters())
    m.eval()
    with torch.no_grad():
        h = torch.as_tensor(prepared.split.test.histories[:3])
        assert m.score_all(h).shape == (3, prepared.dataset.num_items + 1)


def test_end_to_end_training_determinism_and_serving(prepared, tmp_path):
    res = run_toy("disco", prepared, tmp_path / "a")
    losses = losses_of(res)
    assert set(losses) == {f"train/loss_{k}" for k in ("rec", "disentangle", "club_fit", "sufficiency")}
    assert all(math.isfinite(v) for vs in losses.values() for v in vs)
    assert losses["train/loss_rec"][-1] < losses["train/loss_rec"][0]
    assert losses["train/loss_club_fit"][-1] < losses["train/loss_club_fit"][0]
    assert res["test"]["overall"]["NDCG@5"] > 0.3  # random ranking of ~35 candidates: about 0.09
    again = run_toy("disco", prepared, tmp_path / "b")
    assert again["test"]["overall"] == res["test"]["overall"]

    from padrec.serving import Recommender

    rec = Recommender.load(tmp_path / "a")
    assert len(rec.recommend([1, 2, 3], k=5).items) == 5


def test_serving_tables_and_new_items(prepared):
    m = build("disco", prepared)
    served = assert_serving_matches(m, prepared)
    assert served.club is None and served.critics is None
    items = served.items
    assert torch.allclose(items.text_table, m.items.text) and torch.equal(items.history_table, m.items.ids.all())
    n, raw = prepared.dataset.num_items, prepared.text_embeddings
    # an existing item re-added with its own text keeps its vectors; a new one gets E = 0
    served.add_items(torch.tensor([3, n + 1]), torch.stack([raw[3], raw[5]]))
    with torch.no_grad():
        assert torch.allclose(served.items.table[3], m.items.all()[3], atol=1e-5)
        assert torch.all(served.items.history_table[n + 1] == 0)
        assert torch.allclose(served.items.text_table[n + 1], m.items.text[5], atol=1e-5)
        want = m.items.candidate(torch.cat([torch.zeros(m.config.hidden_size), m.items.text[5]]))
        assert torch.allclose(served.items.table[n + 1], want, atol=1e-5)
        scores = served.score_all(torch.tensor([[0, 0, 1, 2, n + 1]]))
    assert scores.shape == (1, n + 2) and torch.isfinite(scores).all()
    assert set(m.item_embeddings()) == {"id", "candidate"}


def test_config_checks_and_shipped_config(prepared):
    with pytest.raises(Exception, match="even"):
        build("disco", prepared, hidden_size=7)
    assert build("disco", prepared).config.club_hidden == 8  # None = d, the official CLUB(d, d, d)
    cfg = assert_config_valid("disco", prepared)
    assert (cfg["alpha"], cfg["beta"]) == (0.2, 0.2)
