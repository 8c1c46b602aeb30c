"""Gates that weight experts per candidate item (PAD's frequency-aware gate and ablations).

Every gate maps candidate item ids to expert weights: ``weights(ids) -> ids.shape × E``
(summing to 1 over experts), computed from the candidate's frequency bucket (and, for the
paper's network gate, the experts' item vectors). Weights for the whole catalogue are
``weights(arange(N+1))``; they do not depend on the user, so full ranking computes them once.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GateKind = Literal["bucket_scalar", "network", "learned", "none"]


class BucketScalarGate(nn.Module):
    """PAD release: three learnable scalars per bucket, w_e = σ(a_e[b]) / Σ_j σ(a_j[b]).

    Args:
        bucket: (N+1,) int64 bucket of each item (1..B; 0 for padding, treated as bucket 1).
        init: one (start, end) pair per expert; a_e is initialised linspace(start, end) over
            buckets 1..B (release: ID (1, 0), aligned (−4, −5), LLM (0, 1)).
    """

    def __init__(self, bucket: torch.Tensor, num_buckets: int, init: list[tuple[float, float]]) -> None:
        super().__init__()
        self.register_buffer("bucket", bucket.clamp_min(1).long() - 1, persistent=False)
        self.logits = nn.Parameter(torch.stack([torch.linspace(a, b, num_buckets) for a, b in init], dim=1))

    def weights(self, ids: torch.Tensor, expert_vectors: list[torch.Tensor] | None = None) -> torch.Tensor:
        s = torch.sigmoid(self.logits)  # B × E
        w = s / s.sum(-1, keepdim=True)
        return w[self.bucket[ids]]


class NetworkGate(nn.Module):
    """PAD paper: g = softmax_e(MLP([bucket embedding ; expert item vectors])).

    Args:
        bucket: (N+1,) bucket ids; num_buckets: B; num_experts: E; hidden_size: d of each
            expert's item vectors; bucket_dim: size of the bucket embedding.
    """

    def __init__(
        self,
        bucket: torch.Tensor,
        num_buckets: int,
        num_experts: int,
        hidden_size: int,
        bucket_dim: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.register_buffer("bucket", bucket.clamp_min(1).long() - 1, persistent=False)
        self.bucket_embedding = nn.Embedding(num_buckets, bucket_dim)
        self.mlp = nn.Sequential(
            nn.Linear(bucket_dim + num_experts * hidden_size, hidden_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_experts),
        )

    def weights(self, ids: torch.Tensor, expert_vectors: list[torch.Tensor] | None = None) -> torch.Tensor:
        if expert_vectors is None:
            raise ValueError("NetworkGate needs the experts' item vectors of the candidates")
        # Stop-gradient on item vectors: the gate reads them but should not reshape them.
        feats = torch.cat([self.bucket_embedding(self.bucket[ids])] + [v.detach() for v in expert_vectors], -1)
        return F.softmax(self.mlp(feats), dim=-1)


class LearnedGate(nn.Module):
    """Bucket-blind ablation: one learnable weight per expert, softmax-normalised."""

    def __init__(self, num_experts: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_experts))

    def weights(self, ids: torch.Tensor, expert_vectors: list[torch.Tensor] | None = None) -> torch.Tensor:
        return F.softmax(self.logits, 0).expand(*ids.shape, -1)


class EqualGate(nn.Module):
    """No gate: every expert weighs 1/E."""

    def __init__(self, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts

    def weights(self, ids: torch.Tensor, expert_vectors: list[torch.Tensor] | None = None) -> torch.Tensor:
        return torch.full((*ids.shape, self.num_experts), 1.0 / self.num_experts, device=ids.device)


def build_gate(
    kind: GateKind,
    bucket: torch.Tensor,
    num_buckets: int,
    experts: list[str],
    hidden_size: int,
    init: dict[str, tuple[float, float]],
) -> nn.Module:
    """Build the gate ``kind`` for the named experts (in order)."""
    if kind == "bucket_scalar":
        return BucketScalarGate(bucket, num_buckets, [init[e] for e in experts])
    if kind == "network":
        return NetworkGate(bucket, num_buckets, len(experts), hidden_size)
    if kind == "learned":
        return LearnedGate(len(experts))
    if kind == "none":
        return EqualGate(len(experts))
    raise ValueError(f"unknown gate '{kind}'; expected bucket_scalar, network, learned or none")
