"""MELT: Mutual Enhancement of Long-Tailed user and item for sequential recommendation
(Kim et al., SIGIR 2023; official code github.com/rlqja1107/MELT), two phases:

1. ``pretrain`` — the backbone f_θ with its ID table E on next-item prediction (the code
   loads, or first trains, a plain SASRec/FMLP-Rec).
2. ``melt`` — the backbone, the user branch W_U and the item branch W_I trained jointly:
   ``L = L_rec + λ_U L_u + λ_I L_i``.

   - User branch (head users → tail users): for a head user (training length > T_u) with
     window S_u and its most recent l items S_u^l, ``L_u = mean_u w_u ‖g(f(S_u^l)) − f(S_u)‖²``
     (mean over users and dimensions) with ``g(z) = z + W_U z`` (``residual_user_loss``;
     the code's loss uses ``W_U z``) and w_u the curriculum weight
     (:func:`~padrec.losses.melt.user_curriculum_weight`).
   - Item branch (head items → tail items): for a head item i, a few of its contexts C
     (sequences ending with i) give ``L_i = mean_i w_i ‖W_I(mean_{c∈C} g(f(c))) − E_i‖²``; the
     transfer g from the user branch treats each context as a short (tail-user-like) sequence.
   - At the first step of every epoch the tail items' embeddings are overwritten by
     ``W_I(mean_{c ∈ C_i} g(f(c)))`` over all their contexts (eval mode, no gradient;
     ``refresh_user_transfer``: the code averages f(c) without g); the rows then train on
     as before, so the item branch feeds better tail items to the user side.
3. Scoring: ``z = f(S_u)``, and ``z + W_U z`` when the history has at most T_u items (a
   tail user); scores ``z · E_j`` for every item.

Users are head or tail by the length of their training sequence (T_u: the 80% quantile,
head = longer), items by their training frequency (T_i: the 80% quantile over the items that
occur, head = more frequent). T_u is phase state of ``melt`` (it decides the transfer at
scoring), saved with the phase's weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from padrec.data.protocols import Split
from padrec.losses.melt import item_curriculum_weight, user_curriculum_weight, weighted_squared_error
from padrec.methods._longtail_common import PhaseStateMethod, state_parameter
from padrec.methods.base import METHODS, MethodContext, Phase, ScoreFactors
from padrec.methods.batches import BatchSettings, StepInfo, TrainBatch
from padrec.methods.melt.config import MELTConfig
from padrec.methods.melt.data import MELTBatch, MELTBatches, MELTData, build_melt_data
from padrec.methods.objectives import ranking_losses
from padrec.models.backbones.base import build_backbone
from padrec.models.experts import Expert
from padrec.models.items.id import IDEmbedding

# contexts encoded per forward pass when the tail items are refreshed
REFRESH_CHUNK = 4096


def segment_mean(values: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of the rows of ``values`` ((M, d)) per owner ((M,) in 0..n-1) -> (n, d)."""
    total = values.new_zeros(n, values.shape[1]).index_add_(0, owner, values)
    count = torch.bincount(owner, minlength=n).clamp_min(1).to(values.dtype)
    return total / count.unsqueeze(1)


@METHODS.register("melt")
class MELT(PhaseStateMethod):
    """A backbone with MELT's user and item branches (module docstring)."""

    config_class = MELTConfig

    def __init__(self, config: MELTConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        d = config.hidden_size
        items = IDEmbedding(context.num_items, d, init_std=config.init_std)
        backbone = build_backbone(config.backbone, config.backbone_config, d, context.max_len)
        self.expert = Expert(items, backbone)
        self.w_user = nn.Linear(d, d)
        self.w_item = nn.Linear(d, d)
        nn.init.xavier_normal_(self.w_user.weight)  # the code's initialisation of W_U and W_I
        nn.init.xavier_normal_(self.w_item.weight)
        self.user_threshold = state_parameter()  # T_u, phase state of 'melt'
        self.data: MELTData | None = None  # set when phase 'melt' builds its batches
        self._refreshed_epoch = -1

    # --- phases -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        return [
            Phase("pretrain", losses=self._pretrain_losses, score=self.expert.score_all, trains=["expert"]),
            Phase(
                "melt",
                losses=self._melt_losses,
                score=self._melt_score,
                trains=["expert", "w_user", "w_item"],
                overrides={"epochs": self.config.e_max},
                after=["pretrain"],
                batches=self._melt_batches,
            ),
        ]

    def phase_state(self, phase: str) -> list[nn.Parameter]:
        return [self.user_threshold] if phase == "melt" else []

    def _melt_batches(self, split: Split, settings: BatchSettings) -> MELTBatches:
        """Phase ``melt``'s batches; sets T_u and keeps the contexts for the tail refresh."""
        cfg = self.config
        self.data = build_melt_data(
            split, self.num_items, self.context.max_len, cfg.head_user_fraction, cfg.head_item_fraction
        )
        with torch.no_grad():
            self.user_threshold.fill_(self.data.user_threshold)
        self._refreshed_epoch = -1
        return MELTBatches(split, self.data, settings)

    # --- the two branches ---------------------------------------------------------------
    def transfer(self, z: torch.Tensor) -> torch.Tensor:
        """g(z) = z + W_U z: (..., d) -> (..., d)."""
        return z + self.w_user(z)

    def user_branch(self, full: torch.Tensor, recent: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """L_u for (U, L) head-user windows, their (U, L) recent subsequences and (U,) w_u."""
        target = self.expert.sequence_vector(full)
        z = self.expert.sequence_vector(recent)
        pred = self.transfer(z) if self.config.residual_user_loss else self.w_user(z)
        return weighted_squared_error(pred, target, weight)

    def infer_items(self, contexts: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
        """W_I(mean_c g(f(c))) for n items from their (C, L) contexts, ``owner`` (C,) in 0..n-1 -> (n, d)."""
        return self.w_item(segment_mean(self.transfer(self.expert.sequence_vector(contexts)), owner, n))

    def item_branch(self, batch: MELTBatch, weight: torch.Tensor) -> torch.Tensor:
        """L_i for the batch's head items with (I,) w_i."""
        pred = self.infer_items(batch.contexts, batch.owner, len(batch.items))
        return weighted_squared_error(pred, self.expert.items(batch.items), weight)

    @torch.no_grad()
    def refresh_tail_items(self) -> None:
        """Overwrite every tail item's embedding with W_I of the mean (transferred) representation
        of all its contexts, in eval mode (no dropout), as at the start of every epoch."""
        if self.data is None or len(self.data.tail_items) == 0:
            return
        d = self.data
        modes = [(m, m.training) for m in (self.expert, self.w_user, self.w_item)]
        for m, _ in modes:
            m.eval()
        device = self.w_item.weight.device
        items = d.tail_items
        rows = torch.cat([torch.arange(int(d.indptr[i]), int(d.indptr[i + 1])) for i in items.tolist()])
        owner = torch.repeat_interleave(torch.arange(len(items)), d.counts[items])
        z = torch.cat([self.expert.sequence_vector(d.contexts[c].to(device)) for c in torch.split(rows, REFRESH_CHUNK)])
        if self.config.refresh_user_transfer:
            z = self.transfer(z)
        vectors = self.w_item(segment_mean(z, owner.to(device), len(items)))
        table = self.expert.items.embedding.weight
        table[items.to(device)] = vectors.to(table.dtype)
        for m, was in modes:
            m.train(was)

    # --- losses -----------------------------------------------------------------------
    def _pretrain_losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(self.expert, batch, cfg.loss, self.num_items, cfg.num_negatives)

    def weights(self, batch: MELTBatch, progress: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(w_u (U,), w_i (I,)) of the batch's head users and items at e/e_max = ``progress``."""
        cfg, d = self.config, self.data
        length = (batch.user_full > 0).sum(1).to(torch.float32)
        t_u = float(self.user_threshold)
        t_i = d.item_threshold if d is not None else 0.0
        w_u = user_curriculum_weight(length, t_u, self.context.max_len, progress)
        w_i = item_curriculum_weight(batch.item_count, t_i, cfg.item_span, progress)
        if cfg.user_weight == "constant":
            w_u = torch.ones_like(w_u)
        if cfg.item_weight == "constant":
            w_i = torch.ones_like(w_i)
        return w_u, w_i

    def _melt_losses(self, batch: MELTBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        if step is not None and step.step == 0 and step.epoch != self._refreshed_epoch:
            self.refresh_tail_items()
            self._refreshed_epoch = step.epoch
        progress = step.epoch / max(1, step.epochs) if step is not None else 0.0
        out = ranking_losses(self.expert, batch.rec, cfg.loss, self.num_items, cfg.num_negatives)
        w_u, w_i = self.weights(batch, progress)
        if len(batch.user_full):
            out["user"] = cfg.lamb_u * self.user_branch(batch.user_full, batch.user_recent, w_u)
        else:  # keeps W_U in the graph (data-parallel training needs every parameter used)
            out["user"] = 0.0 * sum(p.sum() for p in self.w_user.parameters())
        if len(batch.items):
            out["item"] = cfg.lamb_i * self.item_branch(batch, w_i.to(batch.contexts.device))
        else:
            out["item"] = 0.0 * sum(p.sum() for p in self.w_item.parameters())
        return out

    # --- scoring ----------------------------------------------------------------------
    def query(self, histories: torch.Tensor) -> torch.Tensor:
        """(B, L) histories -> (B, d): f(S_u), transferred (z + W_U z) for tail users (at most
        T_u items in the history)."""
        z = self.expert.sequence_vector(histories)
        tail = ((histories > 0).sum(1).to(z.dtype) <= self.user_threshold.to(z.dtype)).unsqueeze(1)
        return torch.where(tail, self.transfer(z), z)

    def _melt_score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.query(histories) @ self.expert.items.all().t()

    def score_factors(self) -> ScoreFactors | None:
        """One inner product: :meth:`query` (phase ``melt``) or f(S_u) against the item table."""
        factors = super().score_factors()
        if factors is not None and self.phase == "melt":
            factors.query = self.query
        return factors

    def report(self) -> dict[str, Any]:
        """T_u and, when this process saw the training data, T_i and the head/tail sizes."""
        out: dict[str, Any] = {"user_threshold": float(self.user_threshold)}
        if self.data is not None:
            d = self.data
            out.update(
                item_threshold=d.item_threshold,
                head_users=d.num_head_users,
                tail_users=d.num_tail_users,
                head_items=len(d.head_items),
                tail_items=len(d.tail_items),
            )
        return out

    def for_serving(self, copy_model: bool = True) -> MELT:
        """As :meth:`Method.for_serving`; the training contexts are not copied."""
        data, self.data = self.data, None
        try:
            served = super().for_serving(copy_model)
        finally:
            self.data = data
        served.data = None
        return served
