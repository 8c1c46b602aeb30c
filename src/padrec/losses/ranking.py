"""Next-item ranking losses and negative sampling."""

from __future__ import annotations

import numpy as np
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


def log_popularity_prior(train_frequency: np.ndarray, smoothing: float = 1.0) -> torch.Tensor:
    """log π_i of the smoothed training popularity, π_i ∝ frequency_i + ``smoothing``.

    Args:
        train_frequency: (N+1,) training interactions per item (row 0 = padding).
    Returns:
        (N+1,) float32 log-probabilities over items 1..N; entry 0 is 0 (padding, never a class).
    """
    f = torch.as_tensor(np.asarray(train_frequency), dtype=torch.float64)[1:] + smoothing
    out = torch.zeros(len(f) + 1, dtype=torch.float64)
    out[1:] = torch.log(f / f.sum())
    return out.float()


def adjusted_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, log_prior: torch.Tensor | None = None, tau: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over items 1..N with optional logit adjustment (Menon et al., ICLR 2021).

    Training on ``logits + tau · log π`` makes the logits themselves estimate
    ``p(i | history) / π_i^tau``: at ``tau = 1`` a popularity-balanced score, at 0 the plain
    softmax. The adjustment is a training-time offset only; scoring uses the raw logits, so
    items that were rare in training (the cold tail) are no longer pushed down by their rarity.

    Args:
        logits: (T, N+1) scores, freshly computed: column 0 (padding, never a class) is set
            to -inf in place.
        targets: (T,) int64 target ids in 1..N.
        log_prior: (N+1,) log π (see :func:`log_popularity_prior`); needed when ``tau != 0``.
        tau: strength of the adjustment.
    Returns:
        scalar mean cross-entropy.
    """
    if tau:
        if log_prior is None:
            raise ValueError("logit adjustment (tau != 0) needs the log popularity prior")
        logits = logits + tau * log_prior.to(logits.device)
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets)


def softmax_ce_loss(
    seq_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: torch.Tensor,
    log_prior: torch.Tensor | None = None,
    tau: float = 0.0,
) -> torch.Tensor:
    """Full softmax cross-entropy over the catalogue at every position with a target.

    Args:
        seq_vectors: (B, L, d) sequence outputs.
        item_vectors: (N+1, d) every item's vector (row 0 = padding, never a class).
        targets: (B, L) int64 next items, 0 where there is no target.
        log_prior, tau: optional logit adjustment (see :func:`adjusted_cross_entropy`).
    Returns:
        scalar mean cross-entropy over positions with a target.
    """
    mask = targets > 0
    logits = seq_vectors[mask] @ item_vectors.t()  # T × (N+1)
    return adjusted_cross_entropy(logits, targets[mask], log_prior, tau)


def sample_shared_negatives(
    num_items: int,
    num_negatives: int,
    log_q: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_negatives`` item ids in 1..N drawn with replacement, shared by a whole batch.

    Args:
        log_q: (N+1,) log sampling probabilities (entry 0 ignored), e.g.
            :func:`log_popularity_prior`; ``None`` samples uniformly.
    Returns:
        (K,) int64 ids on ``device``.
    """
    gen_device = generator.device if generator is not None else torch.device(device)
    if log_q is None:
        ids = torch.randint(1, num_items + 1, (num_negatives,), generator=generator, device=gen_device)
    else:
        probs = log_q[1:].to(gen_device, torch.float64).exp()
        ids = torch.multinomial(probs, num_negatives, replacement=True, generator=generator) + 1
    return ids.to(device)


def sampled_softmax_loss(
    seq_vectors: torch.Tensor,
    target_vectors: torch.Tensor,
    negative_vectors: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor | None = None,
    log_prior: torch.Tensor | None = None,
    tau: float = 0.0,
) -> torch.Tensor:
    """Softmax cross-entropy over the target and K negatives shared by the batch.

    The cost per position is K dot products instead of N, so catalogues of millions of items
    train in the memory and time of a few thousand (Bengio & Senécal 2008; Jean et al. 2015).
    A negative equal to the position's target is removed from that row (an accidental hit).
    With a non-uniform sampler, ``log_q`` subtracts log Q(i) from every logit, the target's
    included (the correction of Yi et al., RecSys 2019), so the loss stays an estimate of the
    full softmax; a uniform sampler needs none (the offset is the same for every item).

    Args:
        seq_vectors: (T, d) sequence outputs at positions with a target.
        target_vectors: (T, d) the targets' candidate vectors.
        negative_vectors: (K, d) the negatives' candidate vectors.
        targets: (T,) int64 target ids. negatives: (K,) int64 negative ids.
        log_q: (N+1,) log sampling probabilities of the sampler, or ``None`` (uniform).
        log_prior, tau: optional logit adjustment (τ·log π on every logit, as in
            :func:`adjusted_cross_entropy`).
    Returns:
        scalar mean cross-entropy over the T positions.
    """
    pos = (seq_vectors * target_vectors).sum(-1, keepdim=True)  # T × 1
    neg = seq_vectors @ negative_vectors.t()  # T × K
    if log_q is not None:
        log_q = log_q.to(seq_vectors.device)
        pos = pos - log_q[targets].unsqueeze(1)
        neg = neg - log_q[negatives].unsqueeze(0)
    if tau:
        if log_prior is None:
            raise ValueError("logit adjustment (tau != 0) needs the log popularity prior")
        log_prior = log_prior.to(seq_vectors.device)
        pos = pos + tau * log_prior[targets].unsqueeze(1)
        neg = neg + tau * log_prior[negatives].unsqueeze(0)
    neg = neg.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=logits.device))
