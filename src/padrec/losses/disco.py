"""DisCo's two regularisers (Du et al., KDD 2024) as tensor functions and two small modules.

- Disentanglement: CLUB (Cheng et al., ICML 2020), the contrastive log-ratio upper bound of the
  mutual information I(x; y) through a variational Gaussian ``q(y | x) = N(μ(x), diag σ²(x))``:

      I_CLUB = mean_i [ log q(y_i | x_i) − mean_j log q(y_j | x_i) ]
             = mean_i Σ_k [ −(μ_ik − y_ik)² + mean_j (μ_ik − y_jk)² ] / (2 σ²_ik)

  (the normalising constants cancel). ``q`` is fitted by maximising its unnormalised
  log-likelihood ``mean_i Σ_k [−(μ_ik − y_ik)² / σ²_ik − log σ²_ik]`` on detached pairs (CLUB's
  ``learning_loss``); the bound itself reaches only the encoders of x and y (CLUB, Algorithm 1).
  μ and log σ² are two-layer MLPs ``x_dim → hidden/2 → y_dim`` with ReLU, log σ² ending in tanh.
- Sufficiency: a Deep-InfoMax critic ``D(p, z) = σ(pᵀ W z + b)`` (DisCo's ``Discriminator_Bilinear``,
  Xavier-uniform W, b = 0) trained with binary cross-entropy: pairs from the joint distribution
  labelled 1, pairs from the product of marginals labelled 0 (:func:`infomax_bce`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BilinearCritic", "CLUBEstimator", "club_upper_bound", "gaussian_log_likelihood", "infomax_bce"]


def club_upper_bound(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CLUB's estimate of I(x; y) from q's outputs for n paired rows.

    ``mean_i Σ_k [mean_j (μ_ik − y_jk)² − (μ_ik − y_ik)²] / (2 σ²_ik)``, with the mean over j
    expanded as ``μ_ik² − 2 μ_ik ȳ_k + mean_j y_jk²`` (O(n·d) memory, no n × n × d tensor).

    Args:
        mu, logvar: (n, d) μ(x_i) and log σ²(x_i). y: (n, d) the paired y_i.
    Returns:
        scalar (0 for no rows).
    """
    if y.shape[0] == 0:
        return y.new_zeros(())
    half_precision = 0.5 * torch.exp(-logvar)
    positive = ((mu - y) ** 2 * half_precision).sum(-1)
    all_pairs = (mu**2 - 2 * mu * y.mean(0) + (y**2).mean(0)) * half_precision
    return (all_pairs.sum(-1) - positive).mean()


def gaussian_log_likelihood(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CLUB's unnormalised log-likelihood ``mean_i Σ_k [−(μ_ik − y_ik)² / σ²_ik − log σ²_ik]``.

    Args:
        mu, logvar, y: (n, d).
    Returns:
        scalar (0 for no rows).
    """
    if y.shape[0] == 0:
        return y.new_zeros(())
    return (-((mu - y) ** 2) * torch.exp(-logvar) - logvar).sum(-1).mean()


class CLUBEstimator(nn.Module):
    """The variational ``q(y | x)`` of CLUB: ``forward(x) -> (μ, log σ²)``.

    Args:
        x_dim, y_dim: widths of x and y.
        hidden: hidden width; each MLP's hidden layer has ``hidden // 2`` units (at least 1).
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int) -> None:
        super().__init__()
        h = max(1, hidden // 2)
        self.mu = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, y_dim), nn.Tanh())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (n, x_dim) -> μ, log σ²: (n, y_dim) each."""
        return self.mu(x), self.logvar(x)

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """I_CLUB(x; y) for (n, ·) paired rows, differentiable in x and y but not in q's weights
        (q is evaluated with detached copies of its parameters)."""
        frozen = {name: p.detach() for name, p in self.named_parameters()}
        mu, logvar = torch.func.functional_call(self, frozen, (x,))
        return club_upper_bound(mu, logvar, y)

    def fit_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """−log-likelihood of y under q(· | x) on detached rows: the loss that fits q alone."""
        mu, logvar = self(x.detach())
        return -gaussian_log_likelihood(mu, logvar, y.detach())


class BilinearCritic(nn.Module):
    """``D(p, z) = pᵀ W z + b`` (a logit), Xavier-uniform W and zero b as DisCo's discriminator.

    Args:
        p_dim, z_dim: widths of the two inputs.
    """

    def __init__(self, p_dim: int, z_dim: int) -> None:
        super().__init__()
        self.bilinear = nn.Bilinear(p_dim, z_dim, 1)
        nn.init.xavier_uniform_(self.bilinear.weight)
        nn.init.zeros_(self.bilinear.bias)

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """p: (..., p_dim), z: (..., z_dim) with the same leading shape -> logits (...)."""
        return self.bilinear(p, z).squeeze(-1)


def infomax_bce(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a critic: positives labelled 1, negatives 0, averaged over all pairs.

    ``(Σ −log σ(pos) + Σ −log(1 − σ(neg))) / (n_pos + n_neg)``.

    Args:
        pos_logits: (n,) critic logits of joint pairs. neg_logits: (m,) of marginal pairs.
    Returns:
        scalar (0 without pairs).
    """
    count = pos_logits.numel() + neg_logits.numel()
    if count == 0:
        return pos_logits.new_zeros(())
    return (F.softplus(-pos_logits).sum() + F.softplus(neg_logits).sum()) / count
