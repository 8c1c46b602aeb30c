"""RLMRec's two mutual-information terms (Ren et al., WWW 2024; official code HKUDS/RLMRec,
``encoder/models/loss_utils.py``), as plain functions of paired item rows.

Both are InfoNCE estimates of the density ratio ``f(s, e) = exp(cos(·, ·) / τ)`` between a
collaborative (ID) view ``e`` and a semantic (LLM) view ``s`` of the same items, with the
other rows of the batch as negatives:

- contrastive (RLMRec-Con, ``cal_infonce_loss``): the semantic rows are first mapped into the
  collaborative space, ``y_i = σ↓(s_i)``, and the anchor of each softmax is the ID row:
  ``L_con = mean_i −log [exp(cos(e_i, y_i)/τ) / Σ_j exp(cos(e_i, y_j)/τ)]``;
- generative (RLMRec-Gen, ``ssl_con_loss``): the encoder's outputs for masked items are mapped
  into the semantic space, ``x_i = σ↑(ê_i)``, and reconstruct the LLM embedding:
  ``L_gen = mean_i −log [exp(cos(x_i, s_i)/τ) / Σ_j exp(cos(x_i, s_j)/τ)]``.
"""

from __future__ import annotations

import torch

from padrec.losses.contrastive import info_nce

__all__ = ["contrastive_alignment", "generative_alignment"]


def contrastive_alignment(id_vecs: torch.Tensor, mapped_text: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """RLMRec-Con's term: one-direction InfoNCE anchored at the ID rows.

    Args:
        id_vecs: (n, d) collaborative item embeddings e_i (one row per item).
        mapped_text: (n, d) σ↓(s_i), the LLM embeddings mapped into the collaborative space;
            row i is the same item as ``id_vecs`` row i, the other rows are its negatives.
        temperature: τ (official ``kd_temperature``).
    Returns:
        scalar ``mean_i −log softmax_j(cos(e_i, σ↓(s_j)) / τ)[i]`` (0 without rows).
    """
    return info_nce(id_vecs, mapped_text, temperature=temperature, symmetric=False)


def generative_alignment(
    reconstructed: torch.Tensor, text: torch.Tensor, ids: torch.Tensor | None = None, temperature: float = 0.5
) -> torch.Tensor:
    """RLMRec-Gen's term: one-direction InfoNCE anchored at the reconstructions.

    Args:
        reconstructed: (n, D) σ↑(ê_i), the masked items' encoder outputs mapped into the
            semantic space.
        text: (n, D) s_i, the items' LLM embeddings (row i pairs with ``reconstructed`` row i).
        ids: (n,) item ids of the rows, or None. The official code reconstructs each masked
            node once; when an item fills several rows, its other rows are removed from each
            row's negatives (never pushed away from itself).
        temperature: τ (official ``re_temperature``).
    Returns:
        scalar ``mean_i −log softmax_j(cos(σ↑(ê_i), s_j) / τ)[i]`` (0 without rows).
    """
    return info_nce(reconstructed, text, temperature=temperature, symmetric=False, dedupe_ids=ids)
