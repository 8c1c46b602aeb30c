"""Next-item ranking losses and negative sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_negatives(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    num_items: int,
    num_negatives: int = 1,
    generator: torch.Generator | None = None,
    max_rounds: int = 8,
) -> torch.Tensor:
    """Uniform negatives in 1..N that are not in the user's sequence (PAD's sampler).

    "The user's sequence" is every item of the row's inputs and targets. Collisions are
    resampled up to ``max_rounds`` times (with N in the thousands a collision after that is
    vanishingly rare).

    Args:
        inputs: (B, L) int64 input items (0 = padding).
        targets: (B, L) int64 target items (0 = none).
    Returns:
        (B, L, K) int64 negatives, K = ``num_negatives``.
    """
    B, L = inputs.shape
    device = inputs.device
    seen = torch.cat([inputs, targets], dim=1)  # B × 2L
    shape = (B, L, num_negatives)
    gen_device = generator.device if generator is not None else device
    neg = torch.randint(1, num_items + 1, shape, generator=generator, device=gen_device).to(device)
    for _ in range(max_rounds):
        clash = (neg.view(B, -1, 1) == seen.view(B, 1, -1)).any(-1).view(shape)
        n_clash = int(clash.sum())
        if n_clash == 0:
            break
        fresh = torch.randint(1, num_items + 1, (n_clash,), generator=generator, device=gen_device).to(device)
        neg = neg.masked_scatter(clash, fresh)
    return neg


def bce_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: positives labelled 1, sampled negatives 0, averaged over targets.

    Args:
        pos_logits: (B, L) logits of the true next items.
        neg_logits: (B, L, K) logits of K negatives per position.
        mask: (B, L) bool, True where a target exists.
    Returns:
        scalar: mean over valid positions of -log σ(pos) - Σ_k log(1 - σ(neg_k)).
    """
    m = mask.float()
    pos = F.softplus(-pos_logits)  # -log σ(x)
    neg = F.softplus(neg_logits).sum(-1)  # -log(1 - σ(x))
    return ((pos + neg) * m).sum() / m.sum().clamp_min(1.0)


def softmax_ce_loss(seq_vectors: torch.Tensor, item_vectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Full softmax cross-entropy over the catalogue at every position with a target.

    Args:
        seq_vectors: (B, L, d) sequence outputs.
        item_vectors: (N+1, d) every item's vector (row 0 = padding, never a class).
        targets: (B, L) int64 next items, 0 where there is no target.
    Returns:
        scalar mean cross-entropy over positions with a target.
    """
    mask = targets > 0
    h = seq_vectors[mask]  # T × d
    logits = h @ item_vectors.t()  # T × (N+1)
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets[mask])
