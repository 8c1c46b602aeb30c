"""Gates that weight experts per candidate item (PAD's frequency-aware gate and ablations).

Every gate maps candidate item ids to expert weights: ``weights(ids) -> ids.shape × E``
(summing to 1 over experts), computed from the candidate's frequency bucket (and, for the
paper's network gate, the experts' item vectors). Weights for the whole catalogue are
``weights(arange(N+1))``; they do not depend on the user, so full ranking computes them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from padrec.registry import Registry


@dataclass
class GateContext:
    """What a gate may know when it is built.

    Attributes:
        bucket: (N+1,) int64 frequency bucket of each item (1..B; 0 = padding).
        num_buckets: B.
        experts: names of the experts it weighs, in order (E of them).
        hidden_size: d of the experts' item vectors.
    """

    bucket: torch.Tensor
    num_buckets: int
    experts: list[str]
    hidden_size: int


class Gate(nn.Module):
    """Base class: ``weights(ids, expert_vectors) -> ids.shape × E``, summing to 1 over experts.

    ``expert_vectors`` (one ids.shape×d tensor per expert) is read only by gates that look at
    the items' vectors (the paper's network gate).
    """

    config_class: ClassVar[type]

    @classmethod
    def from_config(cls, config: Any, context: GateContext) -> Gate:  # pragma: no cover
        """Build from the registered config dataclass and a :class:`GateContext`."""
        raise NotImplementedError

    def weights(self, ids: torch.Tensor, expert_vectors: list[torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover


GATES: Registry[Gate] = Registry("gate", Gate)


@dataclass
class BucketScalarGateConfig:
    """Attributes:
    init: per expert name, the (start, end) logits over buckets 1..B (release: ID (1, 0),
        aligned (−4, −5), LLM (0, 1)); experts not named start at (0, 0).
    """

    init: dict[str, list[float]] = field(
        default_factory=lambda: {"id": [1.0, 0.0], "align": [-4.0, -5.0], "llm": [0.0, 1.0]}
    )

    def __post_init__(self) -> None:
        for name, pair in self.init.items():
            if len(pair) != 2:
                raise ValueError(f"init.{name}: expected [start, end], got {pair}")


@dataclass
class NetworkGateConfig:
    """Attributes:
    bucket_dim: size of the bucket embedding.
    dropout: dropout inside the MLP.
    """

    bucket_dim: int = 16
    dropout: float = 0.1


@dataclass
class NoGateConfig:
    """No settings."""


@GATES.register("bucket_scalar")
class BucketScalarGate(Gate):
    """PAD release: three learnable scalars per bucket, w_e = σ(a_e[b]) / Σ_j σ(a_j[b]).

    Args:
        bucket: (N+1,) int64 bucket of each item (1..B; 0 for padding, treated as bucket 1).
        init: one (start, end) pair per expert; a_e is initialised linspace(start, end) over
            buckets 1..B (release: ID (1, 0), aligned (−4, −5), LLM (0, 1)).
    """

    config_class = BucketScalarGateConfig

    @classmethod
    def from_config(cls, config: BucketScalarGateConfig, context: GateContext) -> BucketScalarGate:
        init = [tuple(config.init.get(e, (0.0, 0.0))) for e in context.experts]
        return cls(context.bucket, context.num_buckets, init)

    def __init__(self, bucket: torch.Tensor, num_buckets: int, init: list[tuple[float, float]]) -> None:
        super().__init__()
        self.register_buffer("bucket", bucket.clamp_min(1).long() - 1, persistent=False)
        self.logits = nn.Parameter(torch.stack([torch.linspace(a, b, num_buckets) for a, b in init], dim=1))

    def weights(self, ids: torch.Tensor, expert_vectors: list[torch.Tensor] | None = None) -> torch.Tensor:
        s = torch.sigmoid(self.logits)  # B × E
        w = s / s.sum(-1, keepdim=True)
        return w[self.bucket[ids]]


@GATES.register("network")
class NetworkGate(Gate):
    """PAD paper: g = softmax_e(MLP([bucket embedding ; expert item vectors])).

    Args:
        bucket: (N+1,) bucket ids; num_buckets: B; num_experts: E; hidden_size: d of each
            expert's item vectors; bucket_dim: size of the bucket embedding.
    """

    config_class = NetworkGateConfig

    @classmethod
    def from_config(cls, config: NetworkGateConfig, context: GateContext) -> NetworkGate:
        return cls(
            context.bucket,
            context.num_buckets,
            len(context.experts),
            context.hidden_size,
            bucket_dim=config.bucket_dim,
            dropout=config.dropout,
        )

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


@GATES.register("learned")
class LearnedGate(Gate):
    """Bucket-blind ablation: one learnable weight per expert, softmax-normalised."""

    config_class = NoGateConfig

    @classmethod
    def from_config(cls, config: NoGateConfig, context: GateContext) -> LearnedGate:
        return cls(len(context.experts))

    def __init__(self, num_experts: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_experts))

    def weights(self, ids: torch.Tensor, expert_vectors: list[torch.Tensor] | None = None) -> torch.Tensor:
        return F.softmax(self.logits, 0).expand(*ids.shape, -1)


@GATES.register("none")
class EqualGate(Gate):
    """No gate: every expert weighs 1/E."""

    config_class = NoGateConfig

    @classmethod
    def from_config(cls, config: NoGateConfig, context: GateContext) -> EqualGate:
        return cls(len(context.experts))

    def __init__(self, num_experts: int) -> None:
        super().__init__()
        self.num_experts = num_experts

    def weights(self, ids: torch.Tensor, expert_vectors: list[torch.Tensor] | None = None) -> torch.Tensor:
        return torch.full((*ids.shape, self.num_experts), 1.0 / self.num_experts, device=ids.device)


def build_gate(name: str, config: Any, context: GateContext) -> Gate:
    """Build the registered gate ``name`` from a config dict (or dataclass, or None)."""
    from padrec.config import from_dict

    cls = GATES.get(name)
    if config is None or isinstance(config, dict):
        config = from_dict(cls.config_class, config or {}, where=f"gate_config ({name})")
    return cls.from_config(config, context)
