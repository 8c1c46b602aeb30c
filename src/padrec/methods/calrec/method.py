"""CALRec (RecSys 2024): a decoder LLM fine-tuned two-tower, items found by BM25.

Training (each stage a phase: ``stage1`` on a mixture of domains, ``stage2`` on the target):

    L = (1 − α − β)·L_NIG + α·L_TT + β·L_UT

- L_NIG: next-item generation, cross-entropy on the target item's tokens (and eos) of the
  user-target sequence (history and target in one text).
- L_TT: in-batch InfoNCE between v_T|U (mean last hidden state over the target's tokens in
  that sequence) and v_T (mean over the target's text alone, run separately).
- L_UT: the same between v_U (mean over the history's tokens) and v_T.
Both towers are the same LLM. Examples with the same target item are not each other's
negatives.

Inference (``score_all``): N sampled continuations of each history's prompt, each mapped to
catalogue items by BM25 over the item texts, the N lists merged round-robin (the samples in
order of their mean log-likelihood) into one ranking; ranked items score by position, the
others 0, so the full-ranking evaluator, its groups and its tests apply unchanged.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from padrec.losses.contrastive import info_nce
from padrec.methods.base import METHODS, Method, MethodContext, Phase
from padrec.methods.batches import BatchSettings, StepInfo
from padrec.methods.calrec.cache import GenerationCache, weights_fingerprint
from padrec.methods.calrec.config import CALRecConfig
from padrec.methods.calrec.examples import CALRecBatches, ExampleSource
from padrec.methods.calrec.generate import SamplingSettings, sample_texts
from padrec.methods.calrec.lm import decoder_and_head, load_lm
from padrec.methods.calrec.prompts import IGNORE, CALRecBatch, PromptCodec

TARGET = "target"  # the codec's name of the run's own domain


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) states averaged over the positions where ``mask`` (B, T) is 1 -> (B, H)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def _prompt_seed(seed: int, prompt: list[int]) -> int:
    return int(hashlib.sha1(json.dumps([seed, prompt]).encode()).hexdigest()[:12], 16)


@METHODS.register("calrec")
class CALRec(Method):
    """CALRec on any Hugging Face causal LM (default SmolLM2-135M-Instruct, LoRA).

    Phases ``stage1`` and/or ``stage2`` (``config.stages``); both validate and score by
    generation + BM25 on the run's own domain.
    """

    config_class = CALRecConfig
    config: CALRecConfig

    def __init__(self, config: CALRecConfig, context: MethodContext) -> None:
        super().__init__(config, context)
        if context.item_texts is None or len(context.item_texts) != context.num_items + 1:
            raise ValueError("CALRec needs the item texts of the catalogue (MethodContext.item_texts, N+1 entries)")
        self.lm, self.tokenizer, self.identity = load_lm(config)
        self._domains: dict[str, list[str]] = {TARGET: list(context.item_texts)}
        self._codec: PromptCodec | None = None
        self._bm25: Any = None
        self._stop: set[int] | None = None
        work = context.work_dir / "calrec_generations" if context.work_dir and config.cache_generations else None
        self.cache = GenerationCache(work)
        self.stats = {"prompts": 0, "generated": 0, "cached": 0, "tokens": 0, "generation_seconds": 0.0}

    # --- capabilities -----------------------------------------------------------------
    @classmethod
    def needs_item_texts(cls, config: Any) -> bool:
        return True

    def saved_state_keys(self) -> set[str]:
        """Only what training changed (LoRA adapters, or every weight with ``finetune: full``):
        the base model is rebuilt from its source."""
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def serving_unsupported(self) -> str | None:
        return (
            "CALRec generates text with its language model per request; padrec's HTTP service serves "
            "methods that rank by vectors (score its run with `padrec evaluate` instead)"
        )

    # --- phases -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        return [Phase(name, self._losses, self._score, batches=self._batches_for(name)) for name in self.config.stages]

    def _batches_for(self, stage: str):
        def build(split: Any, settings: BatchSettings) -> CALRecBatches:
            sources = []
            if stage == "stage2" or self.config.stage1_target:
                sources.append(ExampleSource(TARGET, split.train_inputs, split.train_targets))
            if stage == "stage1":
                for name in self.config.stage1_domains:
                    sources.append(self._domain_source(name))
            return CALRecBatches(sources, self.codec(), settings, self.config.examples_per_epoch)

        return build

    def _domain_source(self, name: str) -> ExampleSource:
        if self.context.domain is None:
            raise ValueError(f"CALRec stage1 domain {name!r}: this run gives the method no way to load other datasets")
        domain = self.context.domain(name)
        key = f"domain:{name}"
        self._domains[key] = domain.item_texts
        self._codec = None  # re-tokenise with the new domain's items
        return ExampleSource(key, domain.split.train_inputs, domain.split.train_targets)

    def codec(self) -> PromptCodec:
        """The prompt codec over every domain loaded so far."""
        if self._codec is None:
            self._codec = PromptCodec(self.tokenizer, self._domains, self.config)
        return self._codec

    # --- training ---------------------------------------------------------------------
    def _losses(self, batch: CALRecBatch, step: StepInfo | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        decoder, head = decoder_and_head(self.lm)
        hidden = decoder(input_ids=batch.ids, attention_mask=batch.attention).last_hidden_state  # (B, T, H)
        labels = batch.labels[:, 1:]
        scored = labels != IGNORE
        logits = head(hidden[:, :-1][scored])  # (tokens, V): position t predicts token t+1
        out = {"nig": (1 - cfg.alpha - cfg.beta) * F.cross_entropy(logits.float(), labels[scored])}
        if cfg.alpha or cfg.beta:
            alone = decoder(input_ids=batch.alone_ids, attention_mask=batch.alone_attention).last_hidden_state
            v_t = masked_mean(alone, batch.alone_item).float()
            if cfg.alpha:
                v_tu = masked_mean(hidden, batch.target).float()
                out["tt"] = cfg.alpha * info_nce(v_tu, v_t, cfg.temperature, symmetric=False, dedupe_ids=batch.keys)
            if cfg.beta:
                v_u = masked_mean(hidden, batch.history).float()
                out["ut"] = cfg.beta * info_nce(v_u, v_t, cfg.temperature, symmetric=False, dedupe_ids=batch.keys)
        return out

    # --- inference --------------------------------------------------------------------
    def _sampling(self) -> SamplingSettings:
        if self._stop is None:
            vocab = len(self.tokenizer)
            pieces = self.tokenizer.batch_decode([[i] for i in range(vocab)])
            self._stop = {int(self.tokenizer.eos_token_id)} | {i for i, p in enumerate(pieces) if "\n" in p}
        c = self.config
        return SamplingSettings(
            c.num_generations, c.sample_temperature, c.top_p, c.max_new_tokens, self._stop, self.codec().pad
        )

    def _sampling_key(self) -> dict[str, Any]:
        c = self.config
        return {
            "n": c.num_generations,
            "temperature": c.sample_temperature,
            "top_p": c.top_p,
            "max_new_tokens": c.max_new_tokens,
            "seed": c.generation_seed,
        }

    def generate(self, histories: list[list[int]], progress: bool = True) -> list[list[tuple[str, float]]]:
        """N sampled item texts per history (item ids oldest first), each with its mean
        token log-likelihood, best first; from the cache where the same weights, prompt and
        sampling settings were generated before."""
        codec = self.codec()
        prompts = [codec.prompt(TARGET, h) for h in histories]
        settings_key = self._sampling_key()
        self.cache.use(weights_fingerprint(self, self.identity))
        keys = [GenerationCache.key(p, settings_key) for p in prompts]
        todo = sorted({k: i for i, k in enumerate(keys) if self.cache.get(k) is None}.values())
        self.stats["prompts"] += len(prompts)
        self.stats["cached"] += len(prompts) - len(todo)
        if todo:
            sampling = self._sampling()
            was_training = self.training
            self.eval()
            size = self.config.generation_batch
            bar = tqdm(
                total=len(todo), desc="CALRec generating", unit="history", disable=not progress or len(todo) <= size
            )
            t0 = time.perf_counter()
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                seeds = [_prompt_seed(self.config.generation_seed, prompts[i]) for i in chunk]
                samples = sample_texts(self.lm, [prompts[i] for i in chunk], seeds, sampling)
                made = {}
                for i, per_prompt in zip(chunk, samples):
                    texts = [self.tokenizer.decode(s.tokens, skip_special_tokens=True).strip() for s in per_prompt]
                    made[keys[i]] = [[t, s.mean_logprob] for t, s in zip(texts, per_prompt)]
                    self.stats["tokens"] += sum(len(s.tokens) for s in per_prompt)
                self.cache.put(made)
                bar.update(len(chunk))
            bar.close()
            self.stats["generated"] += len(todo)
            self.stats["generation_seconds"] += time.perf_counter() - t0
            self.train(was_training)
        out = []
        for k in keys:
            samples = [(str(t), float(lp)) for t, lp in self.cache.get(k)]
            out.append(sorted(samples, key=lambda s: (s[0] == "", -s[1])))  # empty texts last
        return out

    def rank(self, histories: list[list[int]], progress: bool = True) -> list[list[int]]:
        """Each history's ranking of catalogue items (ids, best first; items BM25 never
        retrieved are left out)."""
        from padrec.text.bm25 import BM25Catalogue, round_robin_merge

        if self._bm25 is None:
            self._bm25 = BM25Catalogue(self.context.item_texts[1:], k1=self.config.bm25_k1, b=self.config.bm25_b)
        rankings = []
        for samples in self.generate(histories, progress):
            hits = self._bm25.search([t for t, _ in samples], k=self.config.retrieve_k)
            rankings.append(round_robin_merge([[i for i, _ in h] for h in hits]))
        return rankings

    def _score(self, histories: torch.Tensor) -> torch.Tensor:
        from padrec.text.bm25 import ranking_scores

        rows = [[int(x) for x in h[h > 0]] for h in histories.cpu()]
        rankings = self.rank(rows)
        scores = np.stack([ranking_scores(r, self.num_items) for r in rankings])
        return torch.from_numpy(scores).to(histories.device)

    def report(self) -> dict[str, Any]:
        s = dict(self.stats)
        s["tokens_per_second"] = s["tokens"] / s["generation_seconds"] if s["generation_seconds"] else None
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"lm": self.identity, "trainable_parameters": trainable, "generation": s}
