"""CTRL (Li et al., 2023, "CTRL: Connect Collaborative and Language Model for CTR Prediction")
as PAD adapts it to sequential recommendation (PAD §4.1.3): contrastive alignment, then fine-tuning.

Two phases run by the ordinary trainer:

1. ``align`` — cross-modal knowledge alignment. The collaborative model (ID table + backbone,
   ``expert``) and the semantic model (frozen item text → text MLP → its own backbone,
   ``semantic``) encode the same samples; each representation passes its own linear projection
   head into a common space, and the loss is CTRL's two-direction InfoNCE
   ``L = ½ (L_text→ID + L_ID→text)`` with cosine similarity over temperature τ and the batch's
   other samples as negatives. A sample is one position of a history (the user's state before
   a next-item label; CTRL: one CTR instance), ``granularity: sequence``; ``item`` aligns the
   batch's distinct history items instead (E_i against MLP(x_i), PAD §4.6.1's reading), and
   ``both`` sums the two. CTRL pre-trains for a fixed budget, not against a validation
   metric, so this phase trains ``align_epochs`` epochs and keeps the last weights (it is
   validated once, at its end, with the collaborative model's ranking).
2. ``finetune`` — supervised fine-tuning of the collaborative model alone on next-item
   prediction; the semantic model is discarded, so serving and scoring never read text.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from padrec.config import setting
from padrec.losses.contrastive import info_nce
from padrec.methods.base import METHODS, Method, MethodContext, Phase
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.methods.objectives import MAX_HIDDEN_SIZE, MAX_NEGATIVES, ranking_losses
from padrec.models.backbones.base import backbone_config, build_backbone
from padrec.models.experts import Expert
from padrec.models.items import IDEmbedding, TextMLP
from padrec.models.items.precomputed import freeze_item_tables

ALIGN = ("align",)
FINETUNE = ("finetune",)


@dataclass
class CTRLConfig:
    """CTRL's switches (defaults: padrec's PAD protocol where CTRL, a CTR method, has none).

    Attributes:
        backbone: registered backbone of both models (PAD: SASRec).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` are filled in).
        hidden_size: d of item and sequence vectors (padrec's protocol: 64).
        init_std: std of the ID table's normal initialisation (padrec's default 0.02).
        loss: fine-tuning loss, ``ce`` (full softmax, padrec's default) or ``bce`` (sampled
            negatives; PAD's protocol, CTRL's CTR loss).
        num_negatives: negatives per position for ``bce`` (PAD: 1).
        text_mlp_layers, text_dropout, text_final_activation, text_input_norm: the semantic
            model's text adapter over the frozen embeddings (padrec's PAD defaults: one Linear
            over standardized text; CTRL fine-tunes its PLM, which padrec never runs in training).
        temperature: τ of the InfoNCE (CTRL's value is not in the sources available here:
            0.07, CLIP's initial temperature and padrec's InfoNCE default).
        projection_dim: width of the two linear projection heads into the common space
            (CTRL: linear projections to a shared dimension; None = d).
        granularity: what a contrastive sample is: ``sequence`` (one history position, CTRL's
            instance-level alignment), ``item`` (one distinct history item) or ``both``.
        align_epochs: epochs of the alignment phase (a fixed budget; padrec's choice: 10). The
            phase's overrides set ``epochs`` and ``validate_from`` to it; a ``phase_train.align``
            that changes ``epochs`` must change ``validate_from`` with it.
        align_max_slots: random subsample of the samples per batch above this many (0 = all);
            bounds the slots² similarity matrix.
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = setting(default_factory=dict)
    hidden_size: int = 64
    init_std: float = 0.02
    loss: Literal["ce", "bce"] = setting("ce", phases=FINETUNE)
    num_negatives: int = setting(1, phases=FINETUNE)
    text_mlp_layers: int = setting(0, phases=ALIGN)
    text_dropout: float = setting(0.1, phases=ALIGN)
    text_final_activation: bool = setting(False, phases=ALIGN)
    text_input_norm: Literal["none", "center", "standardize"] = setting("standardize", phases=ALIGN)
    temperature: float = setting(0.07, phases=ALIGN)
    projection_dim: int | None = setting(None, phases=ALIGN)
    granularity: Literal["sequence", "item", "both"] = setting("sequence", phases=ALIGN)
    align_epochs: int = setting(10, phases=ALIGN)
    align_max_slots: int = setting(4096, phases=ALIGN)

    def __post_init__(self) -> None:
        if not 1 <= self.hidden_size <= MAX_HIDDEN_SIZE:
            raise ValueError(f"hidden_size must be between 1 and {MAX_HIDDEN_SIZE}, got {self.hidden_size}")
        if not 1 <= self.num_negatives <= MAX_NEGATIVES:
            raise ValueError(f"num_negatives must be between 1 and {MAX_NEGATIVES}, got {self.num_negatives}")
        if self.init_std <= 0 or self.temperature <= 0:
            raise ValueError("init_std and temperature must be > 0")
        if self.projection_dim is None:
            self.projection_dim = self.hidden_size
        if not 1 <= self.projection_dim <= MAX_HIDDEN_SIZE:
            raise ValueError(f"projection_dim must be between 1 and {MAX_HIDDEN_SIZE}, got {self.projection_dim}")
        if self.align_epochs < 1 or self.align_max_slots < 0:
            raise ValueError("align_epochs must be >= 1 and align_max_slots >= 0")
        if self.text_mlp_layers < 0 or not 0.0 <= self.text_dropout < 1.0:
            raise ValueError("text_mlp_layers must be >= 0 and text_dropout in [0, 1)")
        backbone_config(self.backbone, self.backbone_config, self.hidden_size)


def cap_rows(a: torch.Tensor, b: torch.Tensor, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``cap`` rows of paired (n, ·) tensors when n > cap (cap 0 = all)."""
    if cap and a.shape[0] > cap:
        pick = torch.randperm(a.shape[0], device=a.device)[:cap]
        return a[pick], b[pick]
    return a, b


@METHODS.register("ctrl")
class CTRL(Method):
    """CTRL's collaborative model (``expert``), semantic model (``semantic``) and projection
    heads (``heads``); see the module docstring."""

    config_class = CTRLConfig
    requires_text = True

    def __init__(self, config: CTRLConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        d, L = config.hidden_size, context.max_len

        def backbone() -> nn.Module:
            return build_backbone(config.backbone, config.backbone_config, d, L)

        self.expert = Expert(IDEmbedding(context.num_items, d, init_std=config.init_std), backbone())
        text = TextMLP(
            context.text_embeddings.float(),
            d,
            num_hidden_layers=config.text_mlp_layers,
            dropout=config.text_dropout,
            final_activation=config.text_final_activation,
            input_norm=config.text_input_norm,
        )
        self.semantic: Expert | None = Expert(text, backbone())
        p = config.projection_dim
        self.heads: nn.ModuleDict | None = nn.ModuleDict({"id": nn.Linear(d, p), "text": nn.Linear(d, p)})

    def phases(self) -> list[Phase]:
        """``align`` (a fixed budget of epochs, the last weights kept), then ``finetune``."""
        cfg = self.config
        score = self._score
        return [
            Phase(
                "align",
                losses=self._align_losses,
                score=score,
                trains=["expert", "semantic", "heads"],
                overrides={"epochs": cfg.align_epochs, "validate_from": cfg.align_epochs},
            ),
            Phase("finetune", losses=self._finetune_losses, score=score, trains=["expert"]),
        ]

    # --- losses -----------------------------------------------------------------------
    def contrastive(self, id_side: torch.Tensor, text_side: torch.Tensor) -> torch.Tensor:
        """CTRL's ½(L_text→ID + L_ID→text) for (n, d) paired collaborative and semantic rows,
        after the projection heads."""
        a, b = cap_rows(id_side, text_side, self.config.align_max_slots)
        return info_nce(self.heads["text"](b), self.heads["id"](a), temperature=self.config.temperature)

    def _align_losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        out: dict[str, torch.Tensor] = {}
        if cfg.granularity in ("sequence", "both"):
            valid = batch.targets > 0
            c = self.expert.encode(batch.inputs)[valid]  # n × d, one row per sample
            s = self.semantic.encode(batch.inputs)[valid]
            out["align_sequence"] = self.contrastive(c, s)
        if cfg.granularity in ("item", "both"):
            ids = torch.unique(batch.inputs[batch.inputs > 0])
            out["align_item"] = self.contrastive(self.expert.items(ids), self.semantic.items(ids))
        return out

    def _finetune_losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(self.expert, batch, cfg.loss, self.num_items, cfg.num_negatives)

    # --- scoring and serving ----------------------------------------------------------
    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        """The collaborative model's scores (CTRL serves it alone), (B, N+1)."""
        return self.expert.score_all(histories)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id`` (the collaborative ID table) and, before serving, ``text`` (the semantic
        model's MLP(x)), (N+1)×d."""
        out = {"id": self.expert.items.all().detach()}
        if self.semantic is not None:
            with torch.no_grad():
                out["text"] = self.semantic.items.all().detach()
        return out

    def for_serving(self, copy_model: bool = True) -> CTRL:
        """The collaborative model alone in eval mode, its ID table frozen; the semantic model
        and the projection heads are dropped (CTRL serves without the language side)."""
        served = copy.deepcopy(self) if copy_model else self
        served.eval()
        served.semantic = None
        served.heads = None
        freeze_item_tables(served)
        return served
