"""CALRec's text sequences as token ids, assembled from pieces tokenised once.

A history and its next item become one sequence (the user-target tower)::

    [bos] header (prefix item suffix)×H target_header target_item eos

and the next item alone another (the target tower): ``[bos] target_item``. Item texts are
tokenised once per domain and cut to ``item_tokens``; the fixed strings once. Because pieces
are joined as ids, no tokenizer runs per training step, and a prompt at inference is exactly
the training sequence cut before the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100  # label of tokens without a generation loss


@dataclass
class UserTargetSequence:
    """One user-target sequence.

    Attributes:
        ids: token ids of the whole sequence.
        history: (start, end) of the history part (header and item lines).
        target: (start, end) of the target item's tokens (without the eos).
    """

    ids: list[int]
    history: tuple[int, int]
    target: tuple[int, int]


class PromptCodec:
    """Token ids of prompts and item texts for one tokenizer and one set of domains.

    Args:
        tokenizer: a Hugging Face tokenizer with an eos token.
        item_texts: per domain name, its N+1 item texts (``""`` = padding / no text).
        config: the :class:`~padrec.methods.calrec.config.CALRecConfig` (template strings,
            ``history_items``, ``item_tokens``).
    """

    def __init__(self, tokenizer: Any, item_texts: dict[str, list[str]], config: Any) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("CALRec needs a tokenizer with an end-of-sequence token")
        self.eos = int(tokenizer.eos_token_id)
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos)
        self.history_items = config.history_items
        with_special = tokenizer("a", add_special_tokens=True).input_ids
        plain = tokenizer("a", add_special_tokens=False).input_ids
        has_prefix = len(with_special) > len(plain) and with_special[-len(plain) :] == plain
        self.bos = with_special[: len(with_special) - len(plain)] if has_prefix else []

        def piece(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False).input_ids if text else []

        self.header = piece(config.prompt_header)
        self.prefix = piece(config.item_prefix)
        self.suffix = piece(config.item_suffix)
        self.target_header = piece(config.target_header)
        self.items: dict[str, list[list[int]]] = {}
        for name, texts in item_texts.items():
            # A leading space, as a word inside running text: byte-level BPE vocabularies
            # tokenise " Word" the way the model saw it after "Next purchase:" in pretraining.
            enc = tokenizer(
                [" " + t for t in texts], add_special_tokens=False, truncation=True, max_length=config.item_tokens
            ).input_ids
            self.items[name] = [list(e) if t else [] for e, t in zip(enc, texts)]

    def _history(self, domain: str, history: list[int]) -> list[int]:
        table = self.items[domain]
        ids = list(self.header)
        for item in history[-self.history_items :]:
            ids += self.prefix + table[item] + self.suffix
        return ids

    def prompt(self, domain: str, history: list[int]) -> list[int]:
        """The inference prompt of a history (item ids, oldest first): everything the
        user-target sequence holds before the target item."""
        return self.bos + self._history(domain, history) + self.target_header

    def user_target(self, domain: str, history: list[int], target: int) -> UserTargetSequence:
        """The user-target sequence of a history and its next item."""
        hist = self._history(domain, history)
        start = len(self.bos)
        head = self.bos + hist + self.target_header
        target_ids = self.items[domain][target]
        ids = head + target_ids + [self.eos]
        return UserTargetSequence(ids, (start, start + len(hist)), (len(head), len(head) + len(target_ids)))

    def target_alone(self, domain: str, item: int) -> list[int]:
        """The target tower's sequence: the item's text alone (an item without text: eos)."""
        return self.bos + (self.items[domain][item] or [self.eos])


@dataclass
class CALRecBatch:
    """A batch of CALRec training examples (right-padded).

    Attributes:
        ids, attention: (B, T) user-target sequences and their attention mask.
        labels: (B, T) the token at each position where the generation loss applies (the
            target item's tokens and eos), ``-100`` elsewhere; predicted from position t-1.
        history, target: (B, T) float masks of the history and target-item tokens.
        alone_ids, alone_attention: (B, T2) the target items' texts alone.
        alone_item: (B, T2) float mask of their item tokens (the tokens the target tower pools).
        keys: (B,) int64 ``domain index · 2^32 + item id``: examples with the same key are
            not each other's negatives.
    """

    ids: torch.Tensor
    attention: torch.Tensor
    labels: torch.Tensor
    history: torch.Tensor
    target: torch.Tensor
    alone_ids: torch.Tensor
    alone_attention: torch.Tensor
    alone_item: torch.Tensor
    keys: torch.Tensor

    def to(self, device: torch.device | str) -> CALRecBatch:
        return CALRecBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def collate(
    codec: PromptCodec, examples: list[tuple[int, str, list[int], int]], domain_index: dict[str, int]
) -> CALRecBatch:
    """Build a batch from ``(row, domain, history, target)`` examples."""
    seqs = [codec.user_target(d, h, t) for _, d, h, t in examples]
    alone = [codec.target_alone(d, t) for _, d, _, t in examples]
    B, T, T2 = len(seqs), max(len(s.ids) for s in seqs), max(len(a) for a in alone)
    ids = torch.full((B, T), codec.pad, dtype=torch.long)
    attention = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    history = torch.zeros(B, T)
    target = torch.zeros(B, T)
    alone_ids = torch.full((B, T2), codec.pad, dtype=torch.long)
    alone_attention = torch.zeros(B, T2, dtype=torch.long)
    alone_item = torch.zeros(B, T2)
    for i, (s, a) in enumerate(zip(seqs, alone)):
        n = len(s.ids)
        ids[i, :n] = torch.tensor(s.ids)
        attention[i, :n] = 1
        t0, t1 = s.target
        labels[i, t0 : t1 + 1] = ids[i, t0 : t1 + 1]  # the target's tokens and its eos
        history[i, s.history[0] : s.history[1]] = 1.0
        target[i, t0:t1] = 1.0
        alone_ids[i, : len(a)] = torch.tensor(a)
        alone_attention[i, : len(a)] = 1
        alone_item[i, len(codec.bos) : len(a)] = 1.0
    keys = torch.tensor([domain_index[d] * 2**32 + t for _, d, _, t in examples], dtype=torch.long)
    return CALRecBatch(ids, attention, labels, history, target, alone_ids, alone_attention, alone_item, keys)
