"""LRURec: linear recurrent units for sequential recommendation (Yue et al., WSDM 2024).

Each of ``num_layers`` blocks is an LRU layer followed by a point-wise FFN, both post-LN:

    u_t = γ ⊙ (B x_t)                       B: N×d complex (as two real N×d halves), u_t = 0 at padding
    h_t = λ ⊙ h_{t-1} + u_t,  h_{-1} = 0    λ = exp(-exp(ν_log) + i·exp(θ_log)), |λ| < 1, N complex channels
    y_t = LayerNorm(x_t + Dropout(Re(C h_t)))                       C: d×N complex, D = I (the residual)
    z_t = LayerNorm(y_t + Dropout(W_2 Dropout(GELU(W_1 y_t))))      W_1: 4d×d, W_2: d×4d

with ``LayerNorm(Dropout(x))`` on the item vectors before the first block. There is no
position embedding: the recurrence is order-aware. Every parameter is a real tensor (autocast
and safetensors see ordinary float weights): B is one ``Linear(d, 2N)`` giving
``[Re(B x), Im(B x)]``, and ``Re(C h) = C_re h_re - C_im h_im`` is one ``Linear(2N, d)``
over ``[h_re, h_im]``; only the scan itself runs in complex64.

The recurrence runs as a Hillis–Steele scan: after the step with offset k (1, 2, 4, ...,
< L) position t holds ``Σ_{j<2k} λ^j u_{t-j}``, so ceil(log2 L) steps give
``h_t = Σ_{s<=t} λ^{t-s} u_s`` exactly; ``λ^k = exp(k·(-ν + iθ))`` comes from the log
form, not from repeated multiplication. With ``pack_padding`` the position-wise layers
(projections, FFN, LayerNorms, dropouts) run on the real positions only, gathered into one
R×d matrix; only the scan sees the B×L grid (padding zero there).

Sources and choices (where the paper leaves one open, the authors' release decides):

- The paper (Yue et al. 2024): the diagonalised linear recurrence with a parallel scan,
  ``y = C h + D x``, the residual connections, LayerNorm and the position-wise FFN; its
  formulas have no biases, so B and C have none by default (``bias``).
- Ring initialisation, exponential parameterisation and the γ normalisation come from the
  LRU of Orvieto et al. (2023): ``|λ|² ~ U[r_min², r_max²]``, phase ``θ ~ U[0, max_phase]``,
  ``γ`` a learned vector (stored as ``γ_log``) initialised to ``sqrt(1 - |λ|²)``
  (``learn_gamma: false`` ties it to the current λ instead).
- LRURec's release (github.com/yueqirex/LRURec): state size N = 2d, r_min 0.8, r_max 0.99,
  max phase 2π, D = identity (the learned diagonal D of Orvieto et al. is unused, so the
  skip is the residual itself), dropout 0.2 on the LRU output, in the FFN (after GELU and
  after W_2) and on the input vectors, LayerNorm eps 1e-5, truncated-normal(0, 0.02, ±0.04)
  initialisation of every Linear weight and bias (ν, θ, γ and LayerNorms excepted), 2 blocks.
  The release pads sequences to a power of two for its scan; this scan needs no padding.

Left padding is exact: padded inputs and the projected inputs u at padding are zero in
every layer, so the state is exactly zero until the first real item and real positions
equal a run over the real items alone, with or without ``bias`` (tested). (The release keeps
its biases and instead drops the carried state at padding in its scan; with ``bias: true``
the real outputs are the same.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from padrec.models.backbones.base import BACKBONES, Backbone, BackboneConfig


@dataclass
class LRURecConfig(BackboneConfig):
    """LRURec settings. Defaults follow the authors' release (see the module docstring).

    Attributes:
        num_layers: LRU + FFN blocks.
        state_size: N, complex channels of the recurrence; None = ``2 * hidden_size``.
        r_min: smallest initial eigenvalue modulus |λ| (ring initialisation).
        r_max: largest initial |λ|; below 1, so the recurrence is stable.
        max_phase: initial phases arg(λ) are uniform in [0, max_phase].
        learn_gamma: True = γ is its own parameter initialised to sqrt(1 - |λ|²) (Orvieto et
            al., the release); False = γ = sqrt(1 - |λ|²) of the current λ at every step.
        bias: biases on the B and C projections (release: yes; the paper's formulas: none).
        ffn_multiplier: the FFN's inner width is ``ffn_multiplier * hidden_size``.
        lru_dropout: dropout on ``Re(C h)``; None = ``dropout``.
        input_layer_norm: ``LayerNorm(Dropout(x))`` on the item vectors before the blocks.
        layer_norm_eps: epsilon of every LayerNorm.
        init: ``truncated_normal`` = N(0, init_std) truncated at ±2·init_std for every Linear
            weight and bias (release); ``default`` = PyTorch's own initialisation.
        init_std: standard deviation for ``init='truncated_normal'``.
        pack_padding: run the position-wise layers on the real positions only (R×d) and
            scatter to B×L for the scan alone. Same outputs, less work on short histories;
            False keeps dense B×L×d tensors (static shapes, no host sync on CUDA).
        scan: how the recurrence is evaluated with ``pack_padding``: ``kernel`` applies each
            channel's lower-triangular L×L kernel λ^(t−s) to the window with one batched
            matrix product (O(L²) work at matrix-multiply speed, laid out so that no large
            transpose is copied; 2-3× faster per layer than ``doubling`` at L = 50 on CPU);
            ``doubling`` runs ceil(log2 L) Hillis–Steele steps (O(L log L) elementwise work);
            ``auto`` = ``kernel`` for windows of at most 64 positions. The same outputs up to
            float rounding (tested).
    """

    dropout: float = 0.2
    num_layers: int = 2
    state_size: int | None = None
    r_min: float = 0.8
    r_max: float = 0.99
    max_phase: float = 2 * math.pi
    learn_gamma: bool = True
    bias: bool = False
    ffn_multiplier: int = 4
    lru_dropout: float | None = None
    input_layer_norm: bool = True
    layer_norm_eps: float = 1e-5
    init: Literal["truncated_normal", "default"] = "truncated_normal"
    init_std: float = 0.02
    pack_padding: bool = True
    scan: Literal["auto", "kernel", "doubling"] = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_layers < 1 or self.ffn_multiplier < 1:
            raise ValueError("num_layers and ffn_multiplier must be >= 1")
        if self.state_size is not None and not 1 <= self.state_size <= 65536:
            raise ValueError(f"state_size must be between 1 and 65536, got {self.state_size}")
        if not 0.0 <= self.r_min < self.r_max < 1.0:
            raise ValueError(f"need 0 <= r_min < r_max < 1, got r_min {self.r_min}, r_max {self.r_max}")
        if not 0.0 < self.max_phase <= 2 * math.pi:
            raise ValueError(f"max_phase must be in (0, 2π], got {self.max_phase}")
        if self.lru_dropout is not None and not 0.0 <= self.lru_dropout < 1.0:
            raise ValueError(f"lru_dropout must be in [0, 1), got {self.lru_dropout}")
        if not self.init_std > 0.0 or not self.layer_norm_eps > 0.0:
            raise ValueError("init_std and layer_norm_eps must be > 0")


def ring_init(n: int, r_min: float, r_max: float, max_phase: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ν_log, θ_log)``, each of shape (n,), for eigenvalues uniform on the ring
    ``r_min <= |λ| <= r_max`` (uniform in |λ|², as Orvieto et al.) with phases in [0, max_phase]."""
    u1, u2 = torch.rand(n), torch.rand(n)
    modulus_sq = (u1 * (r_max**2 - r_min**2) + r_min**2).clamp(min=1e-12, max=1.0 - 1e-7)
    nu_log = torch.log(-0.5 * torch.log(modulus_sq))  # |λ| = exp(-ν)
    theta_log = torch.log((u2 * max_phase).clamp(min=1e-7))
    return nu_log, theta_log


def complex_scan(u: torch.Tensor, log_lambda: torch.Tensor) -> torch.Tensor:
    """``h_t = λ ⊙ h_{t-1} + u_t`` (h_{-1} = 0) for every t at once, with λ = exp(log_lambda).

    ``u``: B×L×N complex inputs; ``log_lambda``: N complex, ``-ν + iθ``. Returns h, B×L×N,
    after ceil(log2 L) Hillis–Steele doubling steps (no loop over positions).
    """
    h, L, k = u, u.shape[1], 1
    while k < L:
        # position t adds λ^k h_{t-k} of the previous step (zero for t < k)
        h = h + torch.exp(k * log_lambda) * F.pad(h[:, :-k], (0, 0, k, 0))
        k *= 2
    return h


def scan_kernel(nu: torch.Tensor, theta: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ``K[n, t, s] = λ_n^(t−s)`` for s <= t (0 above the
    diagonal), λ_n = exp(−ν_n + iθ_n): two N×L×L tensors, differentiable in ν and θ."""
    k = torch.arange(length, device=nu.device)
    lag = k[:, None] - k[None, :]
    lag_f = lag.clamp(min=0).to(nu.dtype)
    modulus = torch.exp(-lag_f[None] * nu[:, None, None]) * (lag >= 0)[None]
    angle = lag_f[None] * theta[:, None, None]
    return modulus * torch.cos(angle), modulus * torch.sin(angle)


class LRULayer(nn.Module):
    """``forward(x, pad_mask: B×L, rows) -> LayerNorm(x + Dropout(Re(C h)))`` of x's shape:
    x is B×L×d with ``rows=None``, or R×d holding the real positions, whose flat indices into
    B·L are ``rows`` (R)."""

    def __init__(self, config: LRURecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        n = config.state_size or 2 * d
        self.state_size = n
        self.learn_gamma = config.learn_gamma
        self.scan = config.scan
        nu_log, theta_log = ring_init(n, config.r_min, config.r_max, config.max_phase)
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        if config.learn_gamma:
            self.gamma_log = nn.Parameter(self._gamma(torch.exp(nu_log)).log())
        self.in_proj = nn.Linear(d, 2 * n, bias=config.bias)  # [Re(B x), Im(B x)]
        self.out_proj = nn.Linear(2 * n, d, bias=config.bias)  # [h_re, h_im] -> Re(C h)
        self.dropout = nn.Dropout(config.dropout if config.lru_dropout is None else config.lru_dropout)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    @staticmethod
    def _gamma(nu: torch.Tensor) -> torch.Tensor:
        """sqrt(1 - |λ|²) with |λ|² = exp(-2ν), computed without cancellation near |λ| = 1."""
        return torch.sqrt(-torch.expm1(-2.0 * nu))

    def eigenvalues(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ν, θ)``, each (N,): λ = exp(-ν + iθ), so |λ| = exp(-ν) and arg λ = θ."""
        return torch.exp(self.nu_log), torch.exp(self.theta_log)

    def gamma(self) -> torch.Tensor:
        """The input normalisation γ, (N,)."""
        return torch.exp(self.gamma_log) if self.learn_gamma else self._gamma(torch.exp(self.nu_log))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        B, L = pad_mask.shape
        n = self.state_size
        nu, theta = self.eigenvalues()
        if rows is not None and (self.scan == "kernel" or (self.scan == "auto" and L <= 64)):
            return self._forward_kernel(x, B, L, rows, nu, theta)
        # γ ⊙ [Re(B x), Im(B x)], in the parameters' precision (float32 under bf16 autocast)
        u = self.in_proj(x).to(self.nu_log.dtype) * self.gamma().repeat(2)
        if rows is not None:  # scatter the R real rows into a zero B·L×2N grid
            u = u.new_zeros(B * L, 2 * n).index_copy(0, rows, u).view(B, L, 2 * n)
        else:  # zero at padding: the state stays exactly zero until the first real item
            u = u.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        h = complex_scan(torch.complex(u[..., :n], u[..., n:]), torch.complex(-nu, theta))
        states = torch.cat([h.real, h.imag], dim=-1)  # B×L×2N
        if rows is not None:
            states = states.view(B * L, 2 * n).index_select(0, rows)
        return self.norm(x + self.dropout(self.out_proj(states)))  # out_proj: Re(C h)

    def _forward_kernel(
        self, x: torch.Tensor, B: int, L: int, rows: torch.Tensor, nu: torch.Tensor, theta: torch.Tensor
    ) -> torch.Tensor:
        """The packed forward with the recurrence as one batched matrix product, channels
        first: ``uᵀ = γ ⊙ (W x)ᵀ`` (2N×R) straight from the projection's matrix product,
        scattered into a 2N×B×L grid; for each channel n, ``[h_re | h_im] = [u_re | u_im] ·
        [[K_reᵀ, K_imᵀ], [−K_imᵀ, K_reᵀ]]`` (B×2L times 2L×2L)."""
        n = self.state_size
        dtype = self.nu_log.dtype
        gamma = self.gamma().repeat(2)
        weight = self.in_proj.weight.to(dtype) * gamma[:, None]
        xt = x.to(dtype).t()
        if self.in_proj.bias is not None:
            u_t = torch.addmm((self.in_proj.bias.to(dtype) * gamma)[:, None], weight, xt)  # 2N×R
        else:
            u_t = weight @ xt
        grid = u_t.new_zeros(2 * n, B * L).index_copy(1, rows, u_t).view(2 * n, B, L)
        k_re, k_im = scan_kernel(nu, theta, L)
        k_re, k_im = k_re.transpose(1, 2), k_im.transpose(1, 2)  # [n, s, t]
        kernel = torch.cat([torch.cat([k_re, k_im], 2), torch.cat([-k_im, k_re], 2)], 1)  # N×2L×2L
        h = torch.bmm(torch.cat([grid[:n], grid[n:]], 2), kernel)  # N×B×2L: [h_re | h_im]
        states = torch.cat([h[..., :L], h[..., L:]], 0).reshape(2 * n, B * L).index_select(1, rows)  # 2N×R
        out = nn.functional.linear(states.t(), self.out_proj.weight.to(dtype), self.out_proj.bias)
        return self.norm(x + self.dropout(out.to(x.dtype)))


class FeedForward(nn.Module):
    """``LayerNorm(h + Dropout(W_2 Dropout(GELU(W_1 h))))``; B×L×d -> B×L×d."""

    def __init__(self, config: LRURecConfig) -> None:
        super().__init__()
        d, inner = config.hidden_size, config.ffn_multiplier * config.hidden_size
        self.net = nn.Sequential(
            nn.Linear(d, inner),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(inner, d),
            nn.Dropout(config.dropout),
        )
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h + self.net(h))


class LRUBlock(nn.Module):
    """One LRU layer and one FFN; ``forward(h, pad_mask, rows)`` as :class:`LRULayer`."""

    def __init__(self, config: LRURecConfig) -> None:
        super().__init__()
        self.lru = LRULayer(config)
        self.ffn = FeedForward(config)

    def forward(self, h: torch.Tensor, pad_mask: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        return self.ffn(self.lru(h, pad_mask, rows))


@BACKBONES.register("lrurec")
class LRURec(Backbone):
    """Stacked linear recurrent units over item vectors.

    ``forward(x: B×L×d, pad_mask: B×L bool, True at padding) -> B×L×d``; output t depends on
    items <= t only and not on the amount of left padding; zero at padding positions. Any
    L works (nothing is sized by ``max_len``).
    """

    config_class = LRURecConfig
    causal = True  # h_t sums u_s for s <= t; everything else is position-wise
    adds_positions = False  # no position embedding: the recurrence is order-aware
    bounded_output = True  # every block ends in LayerNorm

    def __init__(self, config: LRURecConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.input_dropout = nn.Dropout(config.dropout)
        self.input_norm = nn.LayerNorm(d, eps=config.layer_norm_eps) if config.input_layer_norm else nn.Identity()
        self.blocks = nn.ModuleList(LRUBlock(config) for _ in range(config.num_layers))
        if config.init == "truncated_normal":
            std = config.init_std
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    for p in (module.weight, module.bias):
                        if p is not None:
                            nn.init.trunc_normal_(p, 0.0, std, -2 * std, 2 * std)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        pad = pad_mask.unsqueeze(-1)
        rows = None
        if self.config.pack_padding:
            rows = (~pad_mask).flatten().nonzero().squeeze(1)  # R flat indices of real positions
            h = x.reshape(B * L, d).index_select(0, rows)  # R×d
        else:
            h = x.masked_fill(pad, 0.0)
        h = self.input_norm(self.input_dropout(h))
        for block in self.blocks:
            h = block(h, pad_mask, rows)
        if rows is not None:
            return h.new_zeros(B * L, d).index_copy(0, rows, h).view(B, L, d)
        return h.masked_fill(pad, 0.0)
