"""LLMInit (FAERec's baseline for LLM2Bert4Rec, Harte et al. 2023; SAID, Hu et al. 2024;
Elephant, Qu et al. 2024): an ID-based sequential recommender whose item table starts from
the items' text embeddings and is then fine-tuned by the ordinary next-item loss.

- Initialisation, ``E = reduce(x)`` for items 1..N (row 0 zeros):
  ``pca`` = ``PCA(n_components=d)`` of the text rows, raw projections without rescaling
  (LLM2Bert4Rec; the same as the LLM-ESR release's ``data/pca.ipynb``, which reduces LLM item
  embeddings to 64 / 128 dimensions, and as FAERec's own E initialisation); ``none`` = the text vectors themselves, which needs d = D
  (Elephant: ``nn.Embedding.from_pretrained(..., freeze=False)`` with the SR model's width
  equal to the PLM's, 768).
- Training: the backbone's usual loss (BCE with sampled negatives or full softmax CE) over
  ``h · E[i]``; every parameter, E included, is trained. Text is not read after ``__init__``,
  so the served model is a plain ID model (no new items from text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from padrec.config import setting
from padrec.methods.base import METHODS, Method, MethodContext, Phase
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.methods.objectives import check_common_fields, popularity_prior, ranking_losses
from padrec.models.backbones.base import build_backbone
from padrec.models.experts import Expert
from padrec.models.items.faerec import pca_table
from padrec.models.items.id import IDEmbedding


@dataclass
class LLMInitConfig:
    """LLMInit.

    Attributes:
        backbone: registered backbone name (FAERec's Table 2 pairs it with SASRec, ...).
        backbone_config: the backbone's own fields (``hidden_size``/``max_len`` are filled in).
        hidden_size: d, the width of E and of sequence vectors (padrec's protocol value 64).
        reduction: how text vectors (D) become d-dimensional ID rows: ``pca`` (LLM2Bert4Rec;
            LLM-ESR release, FAERec's own E) or ``none`` (Elephant: d = D).
        loss: the next-item loss: ``bce`` (FAERec's protocol: one uniform negative per
            position) or ``ce`` (full softmax, BERT4Rec-style training as in LLM2Bert4Rec).
        num_negatives: negatives per position for ``bce`` (FAERec's protocol: 1).
        init_std: std of the N(0, ·) columns PCA cannot fill (fewer than d components).
        logit_adjustment: τ ≥ 0 adds τ·log π_i to the training logits (0 = off; not part of
            LLMInit).
        pca_seed: seed of the fill-in columns (PCA itself is deterministic).
    """

    backbone: str = "sasrec"
    backbone_config: dict[str, Any] = setting(default_factory=dict)
    hidden_size: int = 64
    reduction: Literal["pca", "none"] = "pca"
    loss: Literal["ce", "bce"] = "bce"
    num_negatives: int = 1
    init_std: float = 0.02
    logit_adjustment: float = 0.0
    pca_seed: int = 0

    def __post_init__(self) -> None:
        check_common_fields(self)


def initial_table(text: torch.Tensor, dim: int, reduction: str, init_std: float = 0.02, seed: int = 0) -> torch.Tensor:
    """The (N+1)×d starting ID table from the (N+1)×D text matrix (row 0 zeros).

    ``pca``: :func:`~padrec.models.items.faerec.pca_table`; ``none``: the text rows
    themselves (needs D = d).
    """
    if reduction == "pca":
        return pca_table(text.float(), dim, init_std, seed)
    if reduction == "none":
        if text.shape[1] != dim:
            raise ValueError(
                f"LLMInit reduction 'none' copies the text vectors, so hidden_size must equal the text "
                f"width {text.shape[1]}, got {dim} (use reduction: pca)"
            )
        out = text.detach().float().clone()
        out[0] = 0.0
        return out
    raise ValueError(f"unknown reduction {reduction!r}; expected 'pca' or 'none'")


@METHODS.register("llminit")
class LLMInit(Method):
    """An ID table initialised from the text embeddings feeding one backbone."""

    config_class = LLMInitConfig
    requires_text = True

    def __init__(self, config: LLMInitConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        items = IDEmbedding(context.num_items, config.hidden_size, init_std=config.init_std)
        table = initial_table(
            context.text_embeddings, config.hidden_size, config.reduction, config.init_std, config.pca_seed
        )
        with torch.no_grad():
            items.embedding.weight.copy_(table)
        backbone = build_backbone(config.backbone, config.backbone_config, config.hidden_size, context.max_len)
        self.expert = Expert(items, backbone)
        self.register_buffer("log_prior", popularity_prior(context, config.logit_adjustment), persistent=False)

    def phases(self) -> list[Phase]:
        return [Phase("train", losses=self._losses, score=self._score, trains=["expert"])]

    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        return ranking_losses(
            self.expert, batch, cfg.loss, self.num_items, cfg.num_negatives, self.log_prior, cfg.logit_adjustment
        )

    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.expert.score_all(histories)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id``: E, (N+1)×d."""
        return {"id": self.expert.items.all().detach()}
