"""The extension points of the core, each shown with a small method, representation or
backbone written here: phases as objects, two-sided item representations, backbone
capabilities, trainer hooks (step info, batch builders, schedules, accumulation, bf16),
the serving contract and config checks."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from padrec.config import ConfigError, setting, to_dict
from padrec.data import compute_item_stats, make_split
from padrec.data.protocols import SplitConfig
from padrec.evaluation import EvalConfig
from padrec.experiment import ExperimentConfig, Prepared, load_experiment_config, run_experiment
from padrec.methods import METHODS, Method, MethodContext, Phase, StepInfo, TrainBatch
from padrec.methods.objectives import ranking_losses
from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig, build_backbone
from padrec.models.experts import Expert
from padrec.models.items import ITEM_REPRESENTATIONS, IDEmbedding, ItemContext, ItemRepresentation
from padrec.training.config import TrainConfig
from padrec.training.optim import learning_rate
from padrec.training.trainer import Trainer


# --- a two-phase method: phase 1 an ID model, phase 2 a per-item bias on top of it ---------
@dataclass
class TwoStageConfig:
    hidden_size: int = 8
    bias_scale: float = setting(1.0, phases=("bias",))


@METHODS.register("test_two_stage")
class TwoStage(Method):
    config_class = TwoStageConfig

    def __init__(self, config: TwoStageConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        self.expert = Expert(
            IDEmbedding(context.num_items, config.hidden_size),
            build_backbone("gru4rec", {"dropout": 0.0}, config.hidden_size, context.max_len),
        )
        self.bias = nn.Parameter(torch.zeros(context.num_items + 1))
        self.steps_seen: list[tuple[int, int]] = []

    def phases(self) -> list[Phase]:
        return [
            Phase("ids", losses=self._id_losses, score=self.expert.score_all, trains=["expert"]),
            Phase(
                "bias",
                losses=self._bias_losses,
                score=self._biased,
                trains=["bias"],
                frozen=["expert"],
                overrides={"lr": 0.05},
            ),
        ]

    def _id_losses(self, batch, step):
        return ranking_losses(self.expert, batch, "ce", self.num_items)

    def _biased(self, histories):
        return self.expert.score_all(histories) + self.config.bias_scale * self.bias

    def _bias_losses(self, batch, step):
        self.steps_seen.append((step.epoch, step.step))
        with torch.no_grad():
            h = self.expert.encode(batch.inputs)
        mask = batch.targets > 0
        logits = h[mask] @ self.expert.items.all().t() + self.config.bias_scale * self.bias
        return {"rec": nn.functional.cross_entropy(logits, batch.targets[mask])}


@pytest.fixture
def prepared(toy_dataset):
    split = make_split(toy_dataset, SplitConfig(max_len=10))
    return Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, None, {})


def experiment(tmp_path, **over) -> ExperimentConfig:
    raw = {
        "name": "t",
        "output_dir": str(tmp_path / "run"),
        "method": "test_two_stage",
        "split": {"max_len": 10},
        "stats": {"num_buckets": 4},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "progress": False, "monitor": "NDCG@5"},
        "eval": {"ks": [5]},
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return load_experiment_config(raw)


def test_phases_as_objects_train_their_own_modules_and_are_reused_by_field_metadata(tmp_path, prepared):
    res = run_experiment(experiment(tmp_path), prepared)
    assert [p["phase"] for p in res["phases"]] == ["ids", "bias"]
    assert [p["stopped"] for p in res["phases"]] == ["epochs", "epochs"]
    again = run_experiment(experiment(tmp_path), prepared)
    assert [p["stopped"] for p in again["phases"]] == ["reused", "reused"]
    assert again["test"]["overall"] == res["test"]["overall"]
    # bias_scale is read by phase 'bias' only: phase 'ids' is reused, 'bias' trains again
    changed = run_experiment(experiment(tmp_path, method_config={"bias_scale": 0.5}), prepared)
    assert [p["stopped"] for p in changed["phases"]] == ["reused", "epochs"]


def test_a_phase_trains_only_what_it_names_and_sees_epoch_and_step(prepared, tmp_path):
    torch.manual_seed(0)
    m = METHODS.build("test_two_stage", {}, context=MethodContext(prepared.dataset.num_items, 10))
    m.begin_phase("bias")
    assert m.trainable_parameters() == [m.bias]
    m.train()
    assert not m.expert.training  # frozen in this phase
    before = [p.detach().clone() for p in m.expert.parameters()]
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, progress=False, monitor="NDCG@5")
    Trainer(m, prepared.split, cfg, EvalConfig(ks=[5])).fit("bias", tmp_path / "bias", "fp")
    assert all(torch.equal(a, b) for a, b in zip(before, m.expert.parameters()))
    steps = -(-len(prepared.split.train_inputs) // 64)
    assert m.steps_seen == [(e, s) for e in range(2) for s in range(steps)]


# --- two-sided item representation (FAERec's shape) ----------------------------------------
@dataclass
class SidedConfig:
    pass


@ITEM_REPRESENTATIONS.register("test_two_sided")
class TwoSidedItems(ItemRepresentation):
    """History: ID + projected text; candidates: the ID table in training,
    LayerNorm(ID + projected text) at inference."""

    config_class = SidedConfig
    needs_text = True
    two_sided = True

    def __init__(self, text: torch.Tensor, dim: int) -> None:
        super().__init__()
        self.num_items, self.dim = text.shape[0] - 1, dim
        self.register_buffer("text", text, persistent=False)
        self.ids = IDEmbedding(self.num_items, dim)
        self.proj = nn.Linear(text.shape[1], dim)
        self.norm = nn.LayerNorm(dim)

    @classmethod
    def from_config(cls, config, context: ItemContext):
        return cls(context.text("test_two_sided"), context.dim)

    def history(self, ids):
        return self.ids(ids) + self.proj(self.text[ids])

    def _cand(self, ids_vecs, text_vecs):
        return ids_vecs if self.training else self.norm(ids_vecs + self.proj(text_vecs))

    def forward(self, ids):
        return self.candidates(ids)

    def candidates(self, ids):
        return self._cand(self.ids(ids), self.text[ids])

    def all(self):
        return self._cand(self.ids.all(), self.text)

    def all_history(self):
        return self.ids.all() + self.proj(self.text)


def test_two_sided_items_encode_history_one_way_and_score_candidates_another(prepared):
    text = torch.randn(prepared.dataset.num_items + 1, 6)
    text[0] = 0
    ctx = MethodContext(prepared.dataset.num_items, 10, prepared.stats, text)
    m = METHODS.build("sequential", {"items": "test_two_sided", "hidden_size": 8, "backbone": "gru4rec"}, context=ctx)
    assert METHODS.get("sequential").needs_text(m.config)
    items = m.expert.items
    h = torch.as_tensor(prepared.split.test.histories[:4])
    m.train()
    assert torch.equal(items.all(), items.ids.all())  # training candidates: the ID table
    m.eval()
    with torch.no_grad():
        seq = m.expert.backbone(items.history(h), h == 0)[:, -1]
        want = seq @ items.norm(items.ids.all() + items.proj(text)).t()
        assert torch.allclose(m.score_all(h), want, atol=1e-6)
        served = m.for_serving()
        assert served.expert.items.history_table is not None
        assert torch.allclose(served.score_all(h), want, atol=1e-5)
    batch = TrainBatch(
        torch.as_tensor(prepared.split.train_inputs[:8]),
        torch.as_tensor(prepared.split.train_targets[:8]),
        torch.zeros(8, dtype=torch.long),
    )
    m.train()
    sum(m.losses(batch).values()).backward()
    assert items.proj.weight.grad is not None and items.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("items", ["text", "hybrid"])
def test_morec_and_hybrid_are_configs_of_the_sequential_method(prepared, tmp_path, items):
    text = torch.randn(prepared.dataset.num_items + 1, 6)
    text[0] = 0
    prep = Prepared(prepared.dataset, prepared.stats, prepared.split, text, {})
    cfg = experiment(
        tmp_path, method="sequential", method_config={"items": items, "hidden_size": 8}, train={"epochs": 3}
    )
    res = run_experiment(cfg, prep)
    hist = res["phases"][0]["history"]
    assert hist[-1]["loss_rec"] < hist[0]["loss_rec"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["method_config"]["items"] == items and "init_std" in saved["method_config"]  # resolved


# --- a backbone that is not causal -----------------------------------------------------------
@BACKBONES.register("test_mean_pool")
class MeanPool(Backbone):
    """Every position sees the mean of ALL real positions (it looks ahead)."""

    config_class = BackboneConfig
    causal = False

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__(config)
        self.linear = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, pad_mask):
        keep = (~pad_mask).unsqueeze(-1).float()
        pooled = (x * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp_min(1)
        return self.linear(pooled).expand_as(x).masked_fill(pad_mask.unsqueeze(-1), 0.0)


def looks_ahead(name: str) -> bool:
    torch.manual_seed(0)
    b = BACKBONES.build(name, {"hidden_size": 8, "max_len": 6, "dropout": 0.0}).eval()
    x = torch.randn(2, 6, 8)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    y = x.clone()
    y[:, 4:] += 1.0
    with torch.no_grad():
        return not torch.allclose(b(x, pad)[:, :4], b(y, pad)[:, :4], atol=1e-6)


def test_causality_is_checked_where_claimed():
    for name in BACKBONES.names():
        if BACKBONES.get(name).causal:
            assert not looks_ahead(name), f"{name} claims causality but looks ahead"
    assert looks_ahead("test_mean_pool")  # the check can fail
    assert BACKBONES.get("sasrec").adds_positions and not BACKBONES.get("gru4rec").adds_positions


def test_non_causal_backbones_train_on_prefix_examples(tmp_path, toy_dataset):
    cfg = experiment(tmp_path, method="sequential", method_config={"backbone": "test_mean_pool", "hidden_size": 8})
    assert cfg.split.train_examples == "prefixes"
    assert experiment(tmp_path, method="sequential").split.train_examples == "shifted"
    with pytest.raises(ConfigError, match="train_examples.*non-causal"):
        experiment(
            tmp_path,
            method="sequential",
            split={"train_examples": "shifted"},
            method_config={"backbone": "test_mean_pool"},
        )
    split = make_split(toy_dataset, cfg.split)
    inputs, targets = split.train_inputs, split.train_targets
    assert (targets[:, :-1] == 0).all() and (targets[:, -1] > 0).all()
    shifted = make_split(toy_dataset, SplitConfig(max_len=10))
    assert len(inputs) == int((shifted.train_targets > 0).sum())  # one example per trained position
    prep = Prepared(toy_dataset, compute_item_stats(toy_dataset, 4), split, None, {})
    res = run_experiment(cfg, prep)
    hist = res["phases"][0]["history"]
    assert hist[-1]["loss_rec"] < hist[0]["loss_rec"]


# --- trainer hooks ------------------------------------------------------------------------
@dataclass
class Tokens:
    """A batch that is not an id window (a language model's token batch, say)."""

    x: torch.Tensor
    y: torch.Tensor

    def to(self, device):
        return Tokens(self.x.to(device), self.y.to(device))


class TokenBatches:
    def __init__(self, split, settings):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.settings = settings

    def steps_per_epoch(self):
        return 64 // self.settings.batch_size

    def epoch(self, generator):
        perm = torch.randperm(64, generator=generator)
        bs, k = self.settings.batch_size, self.settings.accumulation
        for b in range(self.steps_per_epoch()):
            idx = perm[b * bs : (b + 1) * bs]
            yield [Tokens(self.x[p], self.y[p]) for p in torch.tensor_split(idx, k)]


@dataclass
class RegressionConfig:
    num_items: int = 0


@METHODS.register("test_regression")
class Regression(Method):
    config_class = RegressionConfig

    def __init__(self, config, context):
        super().__init__(config, context)
        self.w = nn.Linear(4, 1, bias=False)
        self.autocast_seen: list[bool] = []

    def phases(self):
        return [Phase("train", losses=self._losses, score=self._score, batches=TokenBatches)]

    def _losses(self, batch: Tokens, step: StepInfo):
        self.autocast_seen.append(torch.is_autocast_enabled(batch.x.device.type))
        return {"mse": ((self.w(batch.x).squeeze(-1) - batch.y) ** 2).mean()}

    def _score(self, histories):
        return torch.zeros(len(histories), self.num_items + 1)


def fit_regression(prepared, tmp_path, **cfg):
    torch.manual_seed(0)
    m = METHODS.build("test_regression", {}, context=MethodContext(prepared.dataset.num_items, 10))
    tcfg = TrainConfig(epochs=3, batch_size=16, optimizer="sgd", lr=0.05, progress=False, monitor="NDCG@5", **cfg)
    res = Trainer(m, prepared.split, tcfg, EvalConfig(ks=[5])).fit("train", tmp_path / str(sorted(cfg)), "fp")
    return m, res


def test_pluggable_batches_and_gradient_accumulation(prepared, tmp_path):
    m1, res = fit_regression(prepared, tmp_path / "a")
    assert res.history[-1]["loss_mse"] < res.history[0]["loss_mse"] / 2  # trained on token batches
    m2, _ = fit_regression(prepared, tmp_path / "b", grad_accumulation=2)
    # equal-sized micro-batches of a mean loss: the same gradient, so the same weights
    assert torch.allclose(m1.w.weight, m2.w.weight, atol=1e-6)
    assert not any(m1.autocast_seen)
    m3, _ = fit_regression(prepared, tmp_path / "c", precision="bf16")
    assert all(m3.autocast_seen)


def test_learning_rate_schedules():
    cfg = TrainConfig(lr=1.0, schedule="cosine", warmup_steps=10, final_lr_ratio=0.1)
    assert learning_rate(cfg, 0, 110) == pytest.approx(0.1)
    assert learning_rate(cfg, 9, 110) == pytest.approx(1.0)
    assert learning_rate(cfg, 10, 110) == pytest.approx(1.0)
    assert learning_rate(cfg, 109, 110) == pytest.approx(0.1)
    lin = TrainConfig(lr=2.0, schedule="linear")
    assert learning_rate(lin, 0, 11) == 2.0 and learning_rate(lin, 10, 11) == pytest.approx(0.0)
    assert learning_rate(TrainConfig(lr=0.3), 1000, 10) == 0.3


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_optimizer_is_configuration(optimizer):
    from padrec.training.optim import build_optimizer

    opt = build_optimizer([nn.Parameter(torch.zeros(2))], TrainConfig(optimizer=optimizer))
    assert type(opt).__name__.lower() == optimizer


# --- config refusals -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "over,match",
    [
        ({"stats": {"head_basis": "trian"}}, r"stats\.head_basis.*\['train', 'full'\]"),
        ({"method": "pad", "method_config": {"alignment": "mmd_gausian"}}, r"alignment.*mmd_gaussian"),
        ({"train": {"monitor": "HR@50"}}, r"train\.monitor.*K=50.*\[5, 10, 20\]"),
        ({"train": {"monitor": "Recall@10"}}, r"train\.monitor.*expected HR@K"),
        (
            {"method_config": {"hidden_size": 64, "backbone_config": {"hidden_size": 32}}},
            r"backbone_config\.hidden_size = 32 contradicts method_config\.hidden_size = 64",
        ),
        ({"method_config": {"backbone_config": {"num_layer": 2}}}, r"num_layer"),
        ({"eval": {"main_metric": "NDCG@10"}}, r"train\.monitor"),
        ({"train": {"batch_size": 0}}, r"batch_size must be >= 1"),
        ({"phase_train": {"align": {"lrr": 1}}}, r"phase_train\.align.*lrr"),
        ({"method": "nope"}, r"method: unknown method 'nope'"),
    ],
)
def test_config_refuses_mistakes_at_load_time(over, match):
    raw = {"method": "sequential", **over}
    with pytest.raises(ConfigError, match=match):
        load_experiment_config(raw)


# --- serving contract --------------------------------------------------------------------
def test_serving_needs_neither_the_experiment_nor_the_dataset(tmp_path, prepared):
    cfg = experiment(tmp_path, method="sequential", method_config={"hidden_size": 8})
    run_experiment(cfg, prepared)
    meta = json.loads((tmp_path / "run" / "serving.json").read_text())
    assert meta["item_ids"][1:] == [str(i) for i in prepared.dataset.item_ids[1:]]
    assert meta["titles"] == prepared.dataset.titles()
    code = (
        "import sys; import padrec.data.loading as L\n"
        "def refuse(*a, **k): raise SystemExit('serving read the dataset')\n"
        "L.load_dataset = refuse\n"
        "from padrec.serving import Recommender\n"
        f"r = Recommender.load({str(tmp_path / 'run')!r}); r.recommend([1, 2], k=3)\n"
        "bad = [m for m in sys.modules if m.startswith('padrec.experiment')]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_run_directory_records_the_resolved_configs(tmp_path, prepared):
    cfg = experiment(tmp_path, method="sequential", method_config={"hidden_size": 8})
    run_experiment(cfg, prepared)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    model = json.loads((tmp_path / "run" / "model.json").read_text())
    for m in (saved["method_config"], model["method_config"]):
        assert m == to_dict(METHODS.get("sequential").config_class(hidden_size=8))
