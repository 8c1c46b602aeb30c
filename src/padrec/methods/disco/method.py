"""DisCo on a sequential backbone: one phase, L = L_REC + α·L_dis + β·L_suf (+ q's own fit).

Per position t of a history (B × L windows):

- ``h_t = backbone(E[history])_t`` (the tabular model), the four pattern vectors ``p`` of
  :class:`~padrec.methods.disco.network.DualSideAttention`, and the user vector
  ``u_t = W_u [h_t ; p^C_in ; p^T_in ; p^C_co ; p^T_co] + b_u`` (DisCo appends its pattern vectors
  to the backbone's features); scores ``u_t · c_i`` with candidates ``c_i = W_c [E_i ; x_i] + b_c``.
- ``L_REC``: full softmax (``ce``) or BCE with sampled negatives (``bce``).
- ``L_dis = I_CLUB(p^C_in; p^T_in) + I_CLUB(p^C_co; p^T_co)`` over the positions with a target
  (official ``get_club_loss``, feature terms; DisCo's rating-label terms have no counterpart in
  next-item data). The q networks are fitted by the separate term ``club_fit`` (their
  log-likelihood on detached patterns; official ``get_mi_loss``), which reaches only them.
- ``L_suf``: one bilinear critic per pattern, ``BCE(D(p_t, z(target_t)) = 1, D(p_t, z(neg_t)) = 0)``
  with z the target's chunk in the pattern's value space (E^in, x^in, E^co, x^co). DisCo's
  InfoMax tells apart summaries and histories of clicked vs unclicked samples; with next-item
  labels the task label is the next item, represented by its own chunk, so each pattern must
  carry the information that identifies it (sufficiency).

Losses are returned as ``rec``, ``disentangle`` (α·L_dis), ``sufficiency`` (β·L_suf) and
``club_fit``.
"""

from __future__ import annotations

import torch
from torch import nn

from padrec.losses.disco import BilinearCritic, CLUBEstimator, infomax_bce
from padrec.losses.ranking import bce_loss, sample_negatives, softmax_ce_loss
from padrec.methods.base import METHODS, Method, MethodContext, Phase, ScoreFactors
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.methods.disco.config import DisCoConfig
from padrec.methods.disco.network import PATTERNS, DisCoItems, DualSideAttention, halves
from padrec.models.backbones.base import build_backbone

# the value space of each pattern: (view, chunk) — view 0 = E, 1 = x; chunk 0 = intra, 1 = inter
VALUE_SPACE = {"c_intra": (0, 0), "t_intra": (1, 0), "c_inter": (0, 1), "t_inter": (1, 1)}


@METHODS.register("disco")
class DisCo(Method):
    """DisCo's chunked ID/text views, dual-side attention, CLUB and InfoMax (module docstring)."""

    config_class = DisCoConfig
    requires_text = True

    def __init__(self, config: DisCoConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        d = config.hidden_size
        self.items = DisCoItems(context.text_embeddings, d, config.text_input_norm, config.init_std)
        text_dim = self.items.text_dim
        self.backbone = build_backbone(config.backbone, config.backbone_config, d, context.max_len)
        self.attention = DualSideAttention(d, text_dim)
        self.user = nn.Linear(5 * d, d)
        self.club = nn.ModuleDict({chunk: CLUBEstimator(d, d, config.club_hidden) for chunk in ("intra", "inter")})
        widths = [halves(d), halves(text_dim)]
        self.critics = nn.ModuleDict(
            {name: BilinearCritic(d, widths[view][chunk]) for name, (view, chunk) in VALUE_SPACE.items()}
        )

    def phases(self) -> list[Phase]:
        """One phase, ``train``, of every module."""
        return [Phase("train", losses=self._losses, score=self._score)]

    # --- encoding ---------------------------------------------------------------------
    def encode(self, histories: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, L) left-padded histories -> user vectors u (B, L, d) and the pattern vectors."""
        pad = histories == 0
        id_view, text_view = self.items.views(histories)
        h = self.backbone(self.items.history(histories), pad)
        patterns = self.attention(id_view, text_view, pad)
        u = self.user(torch.cat([h, *(patterns[name] for name in PATTERNS)], dim=-1))
        return u.masked_fill(pad.unsqueeze(-1), 0.0), patterns

    def sequence_vector(self, histories: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, d) user vectors at the last position."""
        return self.encode(histories)[0][:, -1]

    # --- losses -----------------------------------------------------------------------
    def _losses(self, batch: TrainBatch, step: StepInfo | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        inputs, targets = batch.inputs, batch.targets
        valid = targets > 0
        u, patterns = self.encode(inputs)
        neg = sample_negatives(inputs, targets, self.num_items, cfg.num_negatives)  # B × L × K
        if cfg.loss == "ce":
            out = {"rec": softmax_ce_loss(u, self.items.all(), targets)}
        else:
            pos = (u * self.items.candidates(targets)).sum(-1)
            out = {"rec": bce_loss(pos, torch.einsum("bld,blkd->blk", u, self.items.candidates(neg)), valid)}
        if not (cfg.disentanglement and cfg.alpha) and not (cfg.sufficiency and cfg.beta):
            return out
        rows = valid.nonzero(as_tuple=True)
        if cfg.max_slots and rows[0].numel() > cfg.max_slots:
            pick = torch.randperm(rows[0].numel(), device=inputs.device)[: cfg.max_slots]
            rows = (rows[0][pick], rows[1][pick])
        slot = {name: v[rows] for name, v in patterns.items()}  # n × d each
        if cfg.disentanglement:
            dis, fit = self.disentanglement(slot)
            out["disentangle"] = cfg.alpha * dis
            out["club_fit"] = fit
        if cfg.sufficiency and cfg.beta:
            out["sufficiency"] = cfg.beta * self.sufficiency(slot, targets[rows], neg[rows])
        return out

    def disentanglement(self, slot: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ_chunk I_CLUB(p^C; p^T), Σ_chunk q's fitting loss) for (n, d) pattern rows."""
        pairs = {"intra": ("c_intra", "t_intra"), "inter": ("c_inter", "t_inter")}
        bound = sum(self.club[c].bound(slot[x], slot[y]) for c, (x, y) in pairs.items())
        fit = sum(self.club[c].fit_loss(slot[x], slot[y]) for c, (x, y) in pairs.items())
        return bound, fit

    def value_chunk(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """The chunk of pattern ``name``'s value space for items ``ids`` (S) -> S×(chunk width)."""
        view, chunk = VALUE_SPACE[name]
        return self.items.views(ids)[view].chunk(2, dim=-1)[chunk]

    def sufficiency(self, slot: dict[str, torch.Tensor], targets: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Σ over patterns of the critic's BCE: (p_t, z(target_t)) labelled 1, (p_t, z(neg_tk)) 0.

        Args:
            slot: pattern -> (n, d). targets: (n,) ids. neg: (n, K) sampled negatives.
        """
        total = targets.new_zeros((), dtype=torch.float32)
        k = neg.shape[1]
        for name, critic in self.critics.items():
            p = slot[name]
            pos = critic(p, self.value_chunk(name, targets))
            negs = critic(p.unsqueeze(1).expand(-1, k, -1), self.value_chunk(name, neg))
            total = total + infomax_bce(pos, negs.reshape(-1))
        return total

    # --- scoring and serving ----------------------------------------------------------
    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.sequence_vector(histories) @ self.items.all().t()

    def score_factors(self) -> ScoreFactors:
        """``score_all(h) = u(h) @ C.T`` with C the candidate table."""
        table = self.items.all()

        def rows(ids: torch.Tensor) -> torch.Tensor:
            return self.items.all()[ids]

        return ScoreFactors(table, self.sequence_vector, {"score": slice(0, table.shape[1])}, rows)

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """``id`` (E) and ``candidate`` tables, (N+1)×d."""
        with torch.no_grad():
            return {"id": self.items.all_history().detach().clone(), "candidate": self.items.all().detach().clone()}

    def for_serving(self, copy_model: bool = True) -> DisCo:
        """Eval mode with the items frozen into candidate, E and x tables
        (:class:`~padrec.methods.disco.network.FrozenDisCoItems`); the regularisers' q networks
        and critics are not needed to score and are dropped."""
        import copy

        served = copy.deepcopy(self) if copy_model else self
        served.eval()
        if isinstance(served.items, DisCoItems):
            served.items = served.items.frozen()
        served.club = None
        served.critics = None
        return served
