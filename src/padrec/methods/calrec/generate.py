"""Sampling N item texts per prompt, batched, with one prefill per prompt.

Each prompt is run through the model once; its key-value cache is then repeated for its N
samples, which decode together. Sampling is nucleus sampling at a temperature (greedy at 0).
Every sample draws its random numbers from its own generator, seeded from the prompt's seed
and the sample's index, so a prompt's samples are the same whatever it is batched with (and
can be cached per prompt). Finished samples (end-of-sequence or a stop token) leave the
batch, so long and short texts do not wait for each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from padrec.methods.calrec.lm import base_model, cache_argument, output_cache


@dataclass
class Sample:
    """One generated text: its tokens (without the stop token) and their mean log-likelihood
    under the model (temperature 1; the first token's among the non-stop tokens), which
    orders a prompt's samples."""

    tokens: list[int]
    mean_logprob: float


@dataclass
class SamplingSettings:
    """How to sample: N per prompt, temperature (0 = greedy), top-p, length cap, stop tokens."""

    n: int
    temperature: float
    top_p: float
    max_new_tokens: int
    stop: set[int]
    pad: int


def _pick(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next tokens (A,) from logits (A, V) and uniform draws u (A,) by inverse-CDF sampling
    from the temperature-scaled nucleus; argmax at temperature 0."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    cum = sorted_p.cumsum(dim=-1)
    keep = (cum - sorted_p) < top_p  # the smallest prefix whose mass reaches top_p (at least one)
    sorted_p = sorted_p * keep
    cum = sorted_p.cumsum(dim=-1)
    threshold = (u.to(cum.device) * cum[:, -1]).unsqueeze(1)
    idx = torch.searchsorted(cum, threshold).clamp(max=cum.shape[1] - 1).squeeze(1)
    return order.gather(1, idx.unsqueeze(1)).squeeze(1)


@torch.no_grad()
def sample_texts(
    model: nn.Module, prompts: list[list[int]], seeds: list[int], settings: SamplingSettings
) -> list[list[Sample]]:
    """N samples for each prompt.

    Args:
        model: a causal LM (or its peft wrapper), in eval mode.
        prompts: token ids per prompt (no padding).
        seeds: one seed per prompt.
        settings: :class:`SamplingSettings`.
    Returns:
        per prompt, its N samples in sample order.
    """
    lm = base_model(model)
    device = next(lm.parameters()).device
    B, n = len(prompts), settings.n
    T = max(len(p) for p in prompts)
    ids = torch.full((B, T), settings.pad, dtype=torch.long)
    attention = torch.zeros(B, T, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding: every prompt ends at the last column
        ids[i, T - len(p) :] = torch.tensor(p)
        attention[i, T - len(p) :] = 1
    ids, attention = ids.to(device), attention.to(device)
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    cache_kw = cache_argument(lm)
    out = lm(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = output_cache(out)
    logits = out.logits[:, -1].repeat_interleave(n, dim=0)  # (B·n, V)
    if n > 1:
        cache.batch_repeat_interleave(n)
    attention = attention.repeat_interleave(n, dim=0)
    next_pos = positions[:, -1].repeat_interleave(n) + 1
    generators = [
        torch.Generator().manual_seed((int(seeds[i]) * 1_000_003 + j) % 2**63) for i in range(B) for j in range(n)
    ]
    tokens: list[list[int]] = [[] for _ in range(B * n)]
    logprob = [0.0] * (B * n)
    active = list(range(B * n))  # sample rows still generating, in cache order
    for step in range(settings.max_new_tokens):
        u = torch.stack([torch.rand((), generator=generators[r]) for r in active])
        if step == 0 and settings.stop:  # every sample writes at least one token
            logits = logits.clone()
            logits[:, sorted(settings.stop)] = float("-inf")
        picked = _pick(logits, u, settings.temperature, settings.top_p)
        lp = torch.log_softmax(logits.float(), dim=-1).gather(1, picked.unsqueeze(1)).squeeze(1)
        keep = []
        for j, (r, tok, tok_lp) in enumerate(zip(active, picked.tolist(), lp.tolist())):
            if tok in settings.stop:
                continue
            tokens[r].append(tok)
            logprob[r] += tok_lp
            keep.append(j)
        if not keep or step == settings.max_new_tokens - 1:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            attention, next_pos, picked = attention[index], next_pos[index], picked[index]
            active = [active[j] for j in keep]
        attention = torch.cat([attention, torch.ones(len(active), 1, dtype=attention.dtype, device=device)], dim=1)
        out = lm(
            input_ids=picked.unsqueeze(1),
            attention_mask=attention,
            position_ids=next_pos.unsqueeze(1),
            use_cache=True,
            **{cache_kw: cache},
        )
        cache = output_cache(out)
        logits = out.logits[:, -1]
        next_pos = next_pos + 1
    return [
        [Sample(tokens[i * n + j], logprob[i * n + j] / max(1, len(tokens[i * n + j]))) for j in range(n)]
        for i in range(B)
    ]
