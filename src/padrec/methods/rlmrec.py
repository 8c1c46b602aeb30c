"""RLMRec (Ren et al., WWW 2024) adapted to sequential recommendation, as FAERec's baselines
``rlmrec_con`` and ``rlmrec_gen``.

The backbone trains on its usual next-item loss over an ID table E (scores ``h · E[i]``); one
mutual-information term between E and the frozen LLM (text) embeddings s is added to it.
Text is used in training only: serving ranks with E and the backbone, like an ID model.

- ``rlmrec_con`` (contrastive alignment, official ``*_plus`` models): ``σ↓`` = MLP
  D → (D+d)/2 → d (LeakyReLU, Xavier-uniform weights) maps s into the collaborative space;
  ``L = L_rec + w · InfoNCE_τ(E[i], σ↓(s_i))`` over the **distinct items of the batch**
  (history items, targets and sampled negatives, each once), anchored at E[i] with the other
  items' σ↓(s_j) as negatives (:func:`~padrec.losses.rlmrec.contrastive_alignment`).
- ``rlmrec_gen`` (generative alignment, official ``*_gene`` models): each step masks a random
  ``mask_ratio`` of the catalogue (official ``NodeMask``: ``max(⌊N·ratio⌋, 1)`` ids); their
  history slots get a learnable mask token (zeros at start) instead of E[i], the backbone runs
  on the masked histories (the next-item loss too, as the official loss is computed on the
  masked forward), and ``σ↑`` = MLP d → (D+d)/2 → D maps the backbone's output at each masked
  slot into the semantic space to reconstruct that item's s:
  ``L = L_rec + w · InfoNCE_τ(σ↑(ê_t), s_{i_t})`` over the masked slots
  (:func:`~padrec.losses.rlmrec.generative_alignment`).

The losses are logged as ``rec`` and ``align`` (= w · the InfoNCE term).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from padrec.config import setting
from padrec.losses.ranking import bce_loss, sample_negatives, softmax_ce_loss
from padrec.losses.rlmrec import contrastive_alignment, generative_alignment
from padrec.methods.base import METHODS, Method, MethodContext, Phase
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.methods.objectives import check_common_fields, popularity_prior
from padrec.models.backbones.base import build_backbone
from padrec.models.experts import Expert
from padrec.models.items.id import IDEmbedding
from padrec.models.items.precomputed import freeze_item_tables


@dataclass
class RLMRecConfig:
    """Fields both RLMRec variants share (the protocol's; the variants add their own).

    Attributes:
        backbone: registered backbone name (FAERec's Table 2: SASRec, ...).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` are filled in).
        hidden_size: d, the width of E and of sequence vectors (padrec's protocol value 64;
            the official code's ``embedding_size`` is 32 for its graph models).
        loss: the backbone's usual next-item loss: ``bce`` (FAERec's protocol: one uniform
            negative per position) or ``ce`` (full softmax).
        num_negatives: negatives per position for ``bce`` (FAERec's protocol: 1).
        init_std: std of E's normal initialisation (padrec's ID default; the official code
            uses Xavier-uniform for its graph models' tables).
        logit_adjustment: τ_LA ≥ 0 added as τ_LA·log π_i to the training logits (0 = off;
            not part of RLMRec).
        align_max_rows: a random subsample of the alignment rows above this many (0 = every
            row; the InfoNCE matrix is rows²).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = setting(default_factory=dict)
    hidden_size: int = 64
    loss: Literal["ce", "bce"] = "bce"
    num_negatives: int = 1
    init_std: float = 0.02
    logit_adjustment: float = 0.0
    align_max_rows: int = 0

    def __post_init__(self) -> None:
        check_common_fields(self)
        if self.align_max_rows < 0:
            raise ValueError(f"align_max_rows must be >= 0, got {self.align_max_rows}")

    def check_term(self, weight: float, temperature: float) -> None:
        """A variant's alignment weight must be >= 0 and its temperature > 0."""
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")


@dataclass
class RLMRecConConfig(RLMRecConfig):
    """RLMRec-Con. Defaults: HKUDS/RLMRec ``encoder/config/modelconf/lightgcn_plus.yml``,
    preset ``amazon`` (= its model-level default).

    Attributes:
        weight: w, weight of the alignment term (official ``kd_weight`` 1e-2).
        temperature: τ of the InfoNCE (official ``kd_temperature`` 0.2).
    """

    weight: float = 0.01
    temperature: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_term(self.weight, self.temperature)


@dataclass
class RLMRecGenConfig(RLMRecConfig):
    """RLMRec-Gen. Defaults: HKUDS/RLMRec ``encoder/config/modelconf/lightgcn_gene.yml``,
    preset ``amazon`` (its model-level defaults are mask 0.1, τ 0.2).

    Attributes:
        weight: w, weight of the reconstruction term (official ``recon_weight`` 0.1).
        temperature: τ of the InfoNCE (official ``re_temperature`` 0.5).
        mask_ratio: share of the catalogue masked per step (official ``mask_ratio`` 0.15).
    """

    weight: float = 0.1
    temperature: float = 0.5
    mask_ratio: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_term(self.weight, self.temperature)
        if not 0.0 < self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {self.mask_ratio}")


class RLMRecMLP(nn.Module):
    """σ of RLMRec: ``Linear(in, (in+out)//2) → LeakyReLU → Linear(·, out)`` with
    Xavier-uniform weights (official ``mlp`` and ``_init_weight``); x: S×in -> S×out."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        hidden = (in_dim + out_dim) // 2
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, out_dim))
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: S×in -> S×out."""
        return self.net(x)


class RLMRecBase(Method):
    """What both variants share: E + backbone, the next-item loss, text in training only."""

    config_class: ClassVar[type]
    requires_text = True
    text: torch.Tensor

    def __init__(self, config: RLMRecConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        items = IDEmbedding(context.num_items, config.hidden_size, init_std=config.init_std)
        backbone = build_backbone(config.backbone, config.backbone_config, config.hidden_size, context.max_len)
        self.expert = Expert(items, backbone)
        self.register_buffer("text", context.text_embeddings.detach().float(), persistent=False)
        self.register_buffer("log_prior", popularity_prior(context, config.logit_adjustment), persistent=False)
        self.align: nn.Module | None = self.build_head(self.text.shape[1], config.hidden_size)

    def build_head(self, text_dim: int, dim: int) -> nn.Module:  # pragma: no cover
        """The alignment module (σ↓ or σ↑ and the mask token)."""
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        trains = ["expert", "align"] if self.config.weight else ["expert"]
        return [Phase("train", losses=self._losses, score=self._score, trains=trains)]

    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def rec_loss(self, h: torch.Tensor, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next-item loss of sequence vectors h (B×L×d) against E, and the (B×L×K)
        negatives it sampled (None for ``ce``)."""
        cfg = self.config
        if cfg.loss == "ce":
            return softmax_ce_loss(
                h, self.expert.items.all(), batch.targets, self.log_prior, cfg.logit_adjustment
            ), None
        neg = sample_negatives(batch.inputs, batch.targets, self.num_items, cfg.num_negatives)
        pos = self.expert.logits(h, batch.targets.unsqueeze(-1)).squeeze(-1)
        neg_logits = self.expert.logits(h, neg)
        if cfg.logit_adjustment:
            pos = pos + cfg.logit_adjustment * self.log_prior[batch.targets]
            neg_logits = neg_logits + cfg.logit_adjustment * self.log_prior[neg]
        return bce_loss(pos, neg_logits, batch.targets > 0), neg

    def subsample(self, rows: torch.Tensor) -> torch.Tensor:
        """Indices 0..n-1 of the alignment rows to use: all, or ``align_max_rows`` at random."""
        cap = self.config.align_max_rows
        n = rows.shape[0]
        if cap and n > cap:
            return torch.randperm(n, device=rows.device)[:cap]
        return torch.arange(n, device=rows.device)

    def touch_head(self) -> torch.Tensor:
        """0 · Σ(head parameters): keeps the head in the graph of a batch without alignment
        rows (data-parallel training needs every trained parameter in every loss)."""
        return sum((p.sum() for p in self.align.parameters()), torch.zeros((), device=self.text.device)) * 0.0

    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.expert.score_all(histories)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id``: E, (N+1)×d."""
        return {"id": self.expert.items.all().detach()}

    def for_serving(self, copy_model: bool = True) -> RLMRecBase:
        """Eval mode, the alignment head dropped (text is not used to score) and E frozen."""
        served = copy.deepcopy(self) if copy_model else self
        served.eval()
        served.align = None
        freeze_item_tables(served)
        return served


@METHODS.register("rlmrec_con")
class RLMRecCon(RLMRecBase):
    """RLMRec-Con: E aligned with σ↓(s) by InfoNCE over the batch's distinct items."""

    config_class = RLMRecConConfig

    def build_head(self, text_dim: int, dim: int) -> nn.Module:
        """σ↓: D -> d."""
        return RLMRecMLP(text_dim, dim)

    def alignment_items(self, batch: TrainBatch, neg: torch.Tensor | None) -> torch.Tensor:
        """The distinct items of the batch: history items, targets and negatives -> (n,) ids."""
        parts = [batch.inputs.reshape(-1), batch.targets.reshape(-1)]
        if neg is not None:
            parts.append(neg[batch.targets > 0].reshape(-1))
        ids = torch.unique(torch.cat(parts))
        return ids[ids > 0]

    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        h = self.expert.encode(batch.inputs)  # B × L × d
        rec, neg = self.rec_loss(h, batch)
        out = {"rec": rec}
        if cfg.weight:
            ids = self.alignment_items(batch, neg)
            ids = ids[self.subsample(ids)]
            mapped = self.align(self.text[ids])  # n × d
            out["align"] = cfg.weight * contrastive_alignment(self.expert.items(ids), mapped, cfg.temperature)
        return out

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id``: E and, before serving, ``llm``: σ↓(s) (row 0 zeros), both (N+1)×d."""
        out = super().item_embeddings()
        if self.align is not None:
            with torch.no_grad():
                mapped = self.align(self.text)
            out["llm"] = torch.cat([mapped.new_zeros(1, mapped.shape[1]), mapped[1:]])
        return out


class GenerativeHead(nn.Module):
    """RLMRec-Gen's parts: the learnable mask token (1×d, zeros at start, official
    ``NodeMask``) and σ↑ (d -> D)."""

    def __init__(self, dim: int, text_dim: int, mask_ratio: float) -> None:
        super().__init__()
        self.mask_ratio = mask_ratio
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.up = RLMRecMLP(dim, text_dim)

    def masked_slots(self, inputs: torch.Tensor, num_items: int) -> torch.Tensor:
        """Draw ``max(⌊N·ratio⌋, 1)`` distinct ids of 1..N; inputs (B, L) -> (B, L) bool,
        True at the history slots holding one of them."""
        k = max(int(num_items * self.mask_ratio), 1)
        ids = torch.randperm(num_items, device=inputs.device)[:k] + 1
        return torch.isin(inputs, ids)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """σ↑: S×d -> S×D."""
        return self.up(h)


@METHODS.register("rlmrec_gen")
class RLMRecGen(RLMRecBase):
    """RLMRec-Gen: masked items' backbone outputs reconstruct their LLM embeddings."""

    config_class = RLMRecGenConfig

    def build_head(self, text_dim: int, dim: int) -> nn.Module:
        """Mask token and σ↑: d -> D."""
        return GenerativeHead(dim, text_dim, self.config.mask_ratio)

    def phases(self) -> list[Phase]:
        # the mask token takes part in the next-item loss even when the weight is 0
        return [Phase("train", losses=self._losses, score=self._score, trains=["expert", "align"])]

    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        inputs = batch.inputs
        x = self.expert.items.history(inputs)  # B × L × d
        masked = self.align.masked_slots(inputs, self.num_items)
        x = torch.where(masked.unsqueeze(-1), self.align.mask_token.to(x.dtype), x)
        h = self.expert.backbone(x, inputs == 0)  # B × L × d, from the masked histories
        rec, _ = self.rec_loss(h, batch)
        rows = masked.nonzero(as_tuple=True)
        ids = inputs[rows]
        keep = self.subsample(ids)
        ids = ids[keep]
        if ids.numel() == 0 or not cfg.weight:
            return {"rec": rec, "align": self.touch_head()}
        recon = self.align(h[rows][keep])  # n × D
        return {"rec": rec, "align": cfg.weight * generative_alignment(recon, self.text[ids], ids, cfg.temperature)}
