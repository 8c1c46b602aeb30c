"""CALRec on a tiny offline Llama: prompts, examples, losses against naive formulas, sampling
against transformers' own greedy decoding, the generation cache, and whole runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers", reason="CALRec needs transformers (extra 'text')")
pytest.importorskip("peft", reason="CALRec's LoRA needs peft (extra 'calrec')")
pytest.importorskip("bm25s", reason="CALRec's retrieval needs bm25s (extra 'calrec')")

from calrec_helpers import make_tiny_lm  # noqa: E402
from conftest import make_toy_dataset  # noqa: E402

from padrec.data import compute_item_stats, make_split  # noqa: E402
from padrec.data.protocols import SplitConfig  # noqa: E402
from padrec.experiment import Prepared, load_experiment_config, run_experiment  # noqa: E402
from padrec.experiment.prepare import item_texts  # noqa: E402
from padrec.methods import METHODS, BatchSettings, Domain, MethodContext  # noqa: E402
from padrec.methods.calrec.cache import GenerationCache  # noqa: E402
from padrec.methods.calrec.config import CALRecConfig  # noqa: E402
from padrec.methods.calrec.examples import CALRecBatches, ExampleSource  # noqa: E402
from padrec.methods.calrec.generate import SamplingSettings, _pick, sample_texts  # noqa: E402
from padrec.methods.calrec.lm import base_model  # noqa: E402
from padrec.methods.calrec.prompts import IGNORE  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")
MAX_LEN = 10


@pytest.fixture(scope="module")
def toy():
    ds = make_toy_dataset(num_users=80, num_items=30)
    return ds, make_split(ds, SplitConfig(max_len=MAX_LEN))


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, toy):
    ds, _ = toy
    return make_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), ds.titles()[1:])


def other_domain(_name: str) -> Domain:
    ds = make_toy_dataset(num_users=40, num_items=20, seed=3)
    texts = [""] + [f"other thing {i}" for i in range(1, 21)]
    return Domain("other", make_split(ds, SplitConfig(max_len=MAX_LEN)), texts)


def build(toy, lm_dir, work_dir=None, **cfg):
    ds, _ = toy
    torch.manual_seed(0)
    ctx = MethodContext(
        ds.num_items,
        MAX_LEN,
        compute_item_stats(ds, 4),
        item_texts=[""] + ds.titles()[1:],
        domain=other_domain,
        work_dir=work_dir,
    )
    return METHODS.build("calrec", {"model": str(lm_dir), "stage1_domains": [], "lora_layers": 1, **cfg}, context=ctx)


def first_batch(method, split, n=8, stage="stage2"):
    builder = method.phase_named(stage).batches(split, BatchSettings(batch_size=n))
    return next(iter(builder.epoch(torch.Generator().manual_seed(0))))[0]


# --- config ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"alpha": 0.6, "beta": 0.5}, r"alpha \+ beta"),
        ({"stages": ["stage2", "stage1"]}, "order"),
        ({"stages": ["stage3"]}, "stages"),
        ({"stage1_domains": [], "stage1_target": False}, "stage1 needs data"),
        ({"sample_temperature": 0.0}, "num_generations: 1"),
        ({"top_p": 0.0}, "top_p"),
    ],
)
def test_bad_settings_are_named(bad, needle):
    with pytest.raises(ValueError, match=needle):
        CALRecConfig(**bad)


def test_shipped_config_loads():
    from pathlib import Path

    from padrec.commands.train import build_config_dict

    path = Path(__file__).resolve().parents[1] / "configs" / "calrec.yaml"
    cfg = load_experiment_config(build_config_dict(path, {}, []))
    assert cfg.method == "calrec" and cfg.method_config["stages"] == ["stage1", "stage2"]


# --- prompts and examples -------------------------------------------------------------------
def test_prompt_is_the_user_target_sequence_cut_before_the_target(toy, lm_dir):
    method = build(toy, lm_dir, history_items=3)
    codec = method.codec()
    history, target = [1, 2, 3, 4, 5], 6
    seq = codec.user_target("target", history, target)
    prompt = codec.prompt("target", history)
    assert seq.ids[: len(prompt)] == prompt
    assert seq.ids[seq.target[0] : seq.target[1]] == codec.items["target"][target]
    assert seq.ids[-1] == codec.eos and seq.target[1] == len(seq.ids) - 1
    # only the last 3 items are written, each as prefix + text + suffix
    body = codec.header + sum((codec.prefix + codec.items["target"][i] + codec.suffix for i in [3, 4, 5]), [])
    assert seq.ids[seq.history[0] : seq.history[1]] == body
    text = method.tokenizer.decode(prompt)
    assert "item 3 title" in text and "item 2 title" not in text


def test_batch_labels_and_masks(toy, lm_dir):
    method = build(toy, lm_dir)
    _, split = toy
    b = first_batch(method, split)
    for i in range(len(b)):
        scored = (b.labels[i] != IGNORE).nonzero().flatten()
        tgt = b.target[i].nonzero().flatten()
        # the target's tokens and then eos carry the generation loss
        assert scored.tolist() == tgt.tolist() + [int(tgt.max()) + 1]
        assert int(b.ids[i, scored[-1]]) == method.codec().eos
        assert (b.history[i] * b.target[i]).sum() == 0  # disjoint spans
        assert b.attention[i, : scored[-1] + 1].all() and not b.attention[i, scored[-1] + 1 :].any()


def test_examples_are_every_target_position_and_stage1_mixes_domains_equally(toy, lm_dir):
    _, split = toy
    src = ExampleSource("target", split.train_inputs, split.train_targets)
    assert len(src.positions) == int((split.train_targets > 0).sum())
    hist, target = src.example(0)
    row, col = src.positions[0]
    assert target == split.train_targets[row, col] and hist[-1] == split.train_inputs[row, col]
    method = build(toy, lm_dir, stage1_domains=["other"], examples_per_epoch=40)
    builder = method.phase_named("stage1").batches(split, BatchSettings(batch_size=10))
    drawn = builder.draw(torch.Generator().manual_seed(1))
    counts = np.bincount([s for s, _ in drawn])
    assert counts.tolist() == [20, 20]
    assert drawn == builder.draw(torch.Generator().manual_seed(1))
    keys = torch.cat([b.keys for step in builder.epoch(torch.Generator().manual_seed(1)) for b in step])
    assert len(set((keys // 2**32).tolist())) == 2  # items of two domains never share a key


def test_data_parallel_shards_split_each_step(toy, lm_dir):
    method = build(toy, lm_dir)
    _, split = toy
    codec = method.codec()
    src = [ExampleSource("target", split.train_inputs, split.train_targets)]
    whole = CALRecBatches(src, codec, BatchSettings(batch_size=8), 24)
    ranks = [CALRecBatches(src, codec, BatchSettings(batch_size=8, rank=r, world_size=2), 24) for r in (0, 1)]
    steps = [list(b.epoch(torch.Generator().manual_seed(5))) for b in [whole, *ranks]]
    assert len(steps[0]) == len(steps[1]) == len(steps[2]) == 3
    for full, a, b in zip(*steps):
        assert len(a[0]) == len(b[0]) == 4

        def rows(*batches):
            return sorted(tuple(ids[m.bool()].tolist()) for x in batches for ids, m in zip(x.ids, x.attention))

        assert rows(a[0], b[0]) == rows(full[0])


# --- losses ---------------------------------------------------------------------------------
def naive_info_nce(q, k, keys, tau):
    total = 0.0
    for i in range(len(q)):
        sims = [F.cosine_similarity(q[i], k[j], dim=0) / tau for j in range(len(k))]
        allowed = [j for j in range(len(k)) if j == i or keys[j] != keys[i]]
        denom = torch.logsumexp(torch.stack([sims[j] for j in allowed]), dim=0)
        total = total + (denom - sims[i])
    return total / len(q)


def test_losses_match_naive_formulas(toy, lm_dir):
    method = build(toy, lm_dir, alpha=0.2, beta=0.3, temperature=0.1, lora_dropout=0.0)
    method.eval()
    _, split = toy
    b = first_batch(method, split)
    b.keys[1] = b.keys[0]  # a duplicated target is not its twin's negative
    out = method.losses(b)
    lm = base_model(method.lm)
    with torch.no_grad():
        hf = lm(input_ids=b.ids, attention_mask=b.attention, labels=b.labels).loss
        h = lm.get_decoder()(input_ids=b.ids, attention_mask=b.attention).last_hidden_state
        ha = lm.get_decoder()(input_ids=b.alone_ids, attention_mask=b.alone_attention).last_hidden_state

    def mean_over(x, m):
        return torch.stack([x[i][m[i] > 0].mean(0) for i in range(len(x))])

    v_t, v_tu, v_u = mean_over(ha, b.alone_item), mean_over(h, b.target), mean_over(h, b.history)
    assert torch.allclose(out["nig"], 0.5 * hf, atol=1e-5)
    assert torch.allclose(out["tt"], 0.2 * naive_info_nce(v_tu, v_t, b.keys, 0.1), atol=1e-4)
    assert torch.allclose(out["ut"], 0.3 * naive_info_nce(v_u, v_t, b.keys, 0.1), atol=1e-4)
    no_contrast = build(toy, lm_dir, alpha=0.0, beta=0.0).losses(b)
    assert set(no_contrast) == {"nig"}


def test_lora_trains_only_adapters_of_the_last_layers_and_the_loss_falls(toy, lm_dir):
    method = build(toy, lm_dir, lora_layers=1, alpha=0.0, beta=0.0, lora_dropout=0.0)
    trained = [n for n, p in method.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n and ".layers.1." in n for n in trained)
    assert method.saved_state_keys() == set(trained)
    full = build(toy, lm_dir, finetune="full", alpha=0.0, beta=0.0)
    assert all(p.requires_grad for p in full.parameters())
    _, split = toy
    b = first_batch(method, split, n=16)
    for model, lr, ratio in ((method, 0.02, 0.99), (full, 0.005, 0.8)):  # LoRA starts at zero: slower
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        model.train()
        first = model.losses(b)["nig"].item()
        for _ in range(20):
            loss = model.losses(b)["nig"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert loss.item() < ratio * first


# --- sampling -------------------------------------------------------------------------------
def test_greedy_decoding_equals_transformers_generate(toy, lm_dir):
    method = build(toy, lm_dir)
    method.eval()
    codec = method.codec()
    prompts = [codec.prompt("target", [1, 2]), codec.prompt("target", [3, 4, 5, 6, 7, 8])]  # unequal lengths
    settings = SamplingSettings(1, 0.0, 1.0, 6, {codec.eos}, codec.pad)
    ours = sample_texts(method.lm, prompts, [0, 1], settings)
    lm = base_model(method.lm)
    for p, samples in zip(prompts, ours):
        ids = torch.tensor([p])
        with torch.no_grad():
            logits = lm(input_ids=ids).logits[0, -1]
        logits[codec.eos] = float("-inf")  # our first token is never a stop token
        first = int(logits.argmax())
        ref = lm.generate(
            torch.tensor([p + [first]]),
            max_new_tokens=5,
            do_sample=False,
            eos_token_id=codec.eos,
            pad_token_id=codec.pad,
        )[0, len(p) :].tolist()
        ref = ref[: ref.index(codec.eos)] if codec.eos in ref else ref
        assert samples[0].tokens == ref


def test_samples_do_not_depend_on_the_batch_they_are_drawn_in(toy, lm_dir):
    method = build(toy, lm_dir)
    method.eval()
    codec = method.codec()
    prompts = [codec.prompt("target", [i, i + 1, i + 2]) for i in range(1, 6)]
    settings = SamplingSettings(3, 1.0, 0.9, 8, {codec.eos}, codec.pad)
    together = sample_texts(method.lm, prompts, [11, 12, 13, 14, 15], settings)
    alone = sample_texts(method.lm, prompts[2:3], [13], settings)
    assert [s.tokens for s in together[2]] == [s.tokens for s in alone[0]]
    assert len({tuple(s.tokens) for s in together[2]}) > 1  # the samples differ from each other


def test_nucleus_sampling_keeps_the_top_mass_only():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    u = torch.linspace(0.001, 0.999, 400)
    picks = torch.cat([_pick(logits, x.view(1), 1.0, 0.7) for x in u])
    assert set(picks.tolist()) == {0, 1}  # 0.5 + 0.3 reaches 0.7
    share = (picks == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.01
    assert _pick(logits, torch.tensor([0.99]), 0.0, 0.5).item() == 0


# --- scoring, cache, runs ---------------------------------------------------------------------
def test_scores_rank_bm25_hits_and_generation_is_cached_on_disk(toy, lm_dir, tmp_path):
    method = build(toy, lm_dir, work_dir=tmp_path, num_generations=2, retrieve_k=5)
    method.eval()
    _, split = toy
    h = torch.as_tensor(split.test.histories[:6])
    with torch.no_grad():
        s1 = method.score_all(h)
    assert s1.shape == (6, method.num_items + 1) and torch.isinf(s1[:, 0]).all()
    assert ((s1[:, 1:] > 0).sum(1) <= 10).all()  # at most 2 lists of 5
    generated = method.stats["generated"]
    with torch.no_grad():
        s2 = method.score_all(h)
    assert torch.equal(s1, s2) and method.stats["generated"] == generated
    again = build(toy, lm_dir, work_dir=tmp_path, num_generations=2, retrieve_k=5)
    again.load_state_dict(method.state_dict())
    with torch.no_grad():
        assert torch.equal(again.eval().score_all(h), s1)
    assert again.stats["generated"] == 0 and again.stats["cached"] == 6
    path = next((tmp_path / "calrec_generations").glob("*.jsonl"))
    with open(path, "a") as f:
        f.write('{"key": "torn')  # an interrupted write
    cache = GenerationCache(tmp_path / "calrec_generations")
    cache.use(again.cache.fingerprint)
    assert len(cache.entries) == 6


def test_ranking_merges_the_samples_lists_round_robin(toy, lm_dir):
    from padrec.text.bm25 import BM25Catalogue, round_robin_merge

    method = build(toy, lm_dir, num_generations=3, retrieve_k=4)
    method.eval()
    hist = [[1, 2, 3], [7, 8]]
    samples = method.generate(hist, progress=False)
    index = BM25Catalogue(method.context.item_texts[1:])
    want = [round_robin_merge([[i for i, _ in r] for r in index.search([t for t, _ in s], k=4)]) for s in samples]
    assert method.rank(hist, progress=False) == want
    for s in samples:
        lps = [lp for t, lp in s if t]
        assert lps == sorted(lps, reverse=True)


def run_toy(out, **method_config):
    ds, split = make_toy_dataset(num_users=80, num_items=30), None
    cfg = load_experiment_config(
        {
            "name": "c",
            "output_dir": str(out),
            "method": "calrec",
            "method_config": {"stage1_domains": [], "examples_per_epoch": 32, "lora_layers": 1, **method_config},
            "split": {"max_len": MAX_LEN},
            "stats": {"num_buckets": 4},
            "train": {
                "epochs": 2,
                "batch_size": 8,
                "lr": 0.01,
                "progress": False,
                "monitor": "NDCG@5",
                "valid_users": 12,
            },
            "eval": {"ks": [1, 5], "users": 20, "users_seed": 3},
        }
    )
    split = make_split(ds, cfg.split)
    prepared = Prepared(ds, compute_item_stats(ds, 4), split, None, {}, item_texts(ds, cfg))
    return run_experiment(cfg, prepared), cfg, prepared


def test_whole_run_is_deterministic_saves_only_adapters_and_reloads(lm_dir, tmp_path):
    res, cfg, prepared = run_toy(tmp_path / "a", model=str(lm_dir))
    assert [p["phase"] for p in res["phases"]] == ["stage1", "stage2"]
    assert res["test_users"]["evaluated"] == 20 and res["test_users"]["of"] == 80
    lo, hi = res["test_users"]["ci95"]["HR@5"]
    assert lo <= res["test"]["overall"]["HR@5"] <= hi
    assert res["valid"]["num_users"] == 12
    assert not (tmp_path / "a" / "serving.safetensors").exists()
    from safetensors import safe_open

    with safe_open(str(tmp_path / "a" / "model.safetensors"), "pt") as f:
        assert all("lora_" in k for k in f.keys())
    again, _, _ = run_toy(tmp_path / "b", model=str(lm_dir))
    assert again["test"]["overall"] == res["test"]["overall"]

    def values(r):
        return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in r["phases"][1]["history"]]

    assert values(again) == values(res)
    # load_run's way back: the base model rebuilt from its source, the adapters loaded over it
    from padrec.evaluation import evaluate
    from padrec.experiment.prepare import build_method
    from padrec.training.checkpoint import load_weights
    from padrec.training.trainer import make_score_fn

    method = build_method(cfg, prepared)
    method.set_phase("stage2")
    load_weights(method, tmp_path / "a" / "model.safetensors", partial=method.saved_state_keys() is not None)
    method.eval()
    sample = prepared.split.test.sample(20, 3)

    reloaded = evaluate(make_score_fn(method), sample, prepared.stats, cfg.eval, main_metric="NDCG@5")
    assert reloaded.overall == pytest.approx(res["test"]["overall"])
    report = res["method_report"]
    assert report["generation"]["tokens"] > 0 and report["trainable_parameters"] > 0
    assert json.loads((tmp_path / "a" / "results.json").read_text())["test_users"]["sample_seed"] == 3


def test_ablation_without_stage1_has_one_phase(lm_dir, tmp_path):
    res, _, _ = run_toy(tmp_path / "s2", model=str(lm_dir), stages=["stage2"], alpha=0.0)
    assert [p["phase"] for p in res["phases"]] == ["stage2"]
    assert all("loss_tt" not in row for row in res["phases"][0]["history"])
    assert not math.isnan(res["test"]["overall"]["HR@5"])
