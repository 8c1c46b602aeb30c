"""LOAM's Tail Session Mixup (TSM): interpolate each tail session's representation with its most
similar other session and predict the tail session's own target from the mix."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from padrec.losses.ranking import adjusted_cross_entropy

__all__ = ["mixup_partners", "tail_session_mixup_loss"]


def mixup_partners(
    vectors: torch.Tensor,
    queries: torch.Tensor,
    sessions: torch.Tensor | None = None,
    similarity: Literal["cosine", "random"] = "cosine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixup partner of each query session: the most cosine-similar other session (LOAM's
    ``sim_type='cosine'``) or a uniformly random one (``'random'``).

    Args:
        vectors: (n, d) session representations.
        queries: (m,) int64 indices into ``vectors`` of the sessions that get a partner.
        sessions: (n,) int64 the sequence each representation comes from; when given, a
            partner never comes from the query's own sequence (its other prefixes). None:
            only the query itself is excluded.
        similarity: ``cosine`` or ``random``.
    Returns:
        ``(queries_kept, partners)``, each (m',) int64: the queries that have an admissible
        partner and that partner's index.
    """
    if similarity not in ("cosine", "random"):
        raise ValueError(f"unknown mixup similarity {similarity!r}; expected 'cosine' or 'random'")
    n = vectors.shape[0]
    if queries.numel() == 0 or n < 2:
        return queries[:0], queries[:0]
    with torch.no_grad():
        if similarity == "cosine":
            unit = F.normalize(vectors.detach().float(), dim=-1)
            scores = unit[queries] @ unit.t()  # m × n
        else:
            scores = torch.rand(queries.shape[0], n, device=vectors.device)
        columns = torch.arange(n, device=vectors.device)
        forbidden = columns.unsqueeze(0) == queries.unsqueeze(1)
        if sessions is not None:
            forbidden |= sessions.unsqueeze(0) == sessions[queries].unsqueeze(1)
        scores = scores.masked_fill(forbidden, float("-inf"))
        best, partners = scores.max(dim=1)
        keep = torch.isfinite(best)
    return queries[keep], partners[keep]


def tail_session_mixup_loss(
    seq_vectors: torch.Tensor,
    targets: torch.Tensor,
    is_tail: torch.Tensor,
    item_vectors: torch.Tensor,
    mixup_lambda: float = 0.8,
    similarity: Literal["cosine", "random"] = "cosine",
    other_sequences: bool = True,
) -> torch.Tensor:
    """LOAM's TSM loss on one batch of sequences.

    Every position with a target is a session (the prefix ending there), represented by the
    backbone's output ``h``. For each session whose target is a tail item, with partner ``p``
    from :func:`mixup_partners`, ``h̃ = λ h + (1 − λ) h_p`` and the loss is the mean over those
    sessions of the full-softmax cross-entropy of ``h̃ · E_iᵀ`` (items 1..N) at the tail
    session's own target (LOAM's ``session_interpolate``; the partner's target is ignored).

    Args:
        seq_vectors: (B, L, d) sequence outputs of the original (not augmented) rows.
        targets: (B, L) int64 next items, 0 where there is none.
        is_tail: (N+1,) bool, True for tail items.
        item_vectors: (N+1, d) candidate table (row 0 padding, never a class).
        mixup_lambda: λ, the tail session's share of the mix.
        similarity: how partners are chosen (``cosine`` or ``random``).
        other_sequences: partners come from other rows only (not the row's other prefixes).
    Returns:
        scalar loss; 0 (attached to the graph) when the batch has no tail session with a partner.
    """
    mask = targets > 0
    rows = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1).expand_as(targets)[mask]
    vecs = seq_vectors[mask]  # n × d
    tgt = targets[mask]
    queries = is_tail[tgt].nonzero().squeeze(1)
    queries, partners = mixup_partners(vecs, queries, rows if other_sequences else None, similarity)
    if queries.numel() == 0:
        return vecs.sum() * 0.0
    mixed = mixup_lambda * vecs[queries] + (1.0 - mixup_lambda) * vecs[partners]
    return adjusted_cross_entropy(mixed @ item_vectors.t(), tgt[queries])
