"""Evaluation protocols: turn a :class:`SequenceDataset` into train/valid/test examples.

Both built-in protocols are leave-one-out with a validation item:
train on ``seq[:-2]`` (a next-item target at every position), validate on target
``seq[-2]`` with history ``seq[:-2]``, test on target ``seq[-1]`` with history ``seq[:-1]``.
Histories keep the last ``max_len`` items, left-padded with 0.

- ``pad`` (PAD's release): window 20; users with fewer than 3 items are dropped.
- ``faerec`` (FAERec / SASRec release): window 50; users with fewer than 3 items are kept
  for training on their whole sequence but not evaluated.

Training examples come in two shapes (``train_examples``):

- ``shifted``: one window per user, the target at every position is the next item (for
  causal backbones, which may not look ahead: every position trains at once);
- ``prefixes``: one example per training position t (input ``seq[:t]``, target ``seq[t]``
  at the last position only, 0 elsewhere), as RecBole trains every model: for backbones
  that see the whole input (an FFT filter, pooling over all positions), so that no
  example ever shows the model its own target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from padrec.data.dataset import SequenceDataset
from padrec.data.errors import DataError

PROTOCOL_DEFAULTS = {
    "pad": {"max_len": 20, "short_sequences": "drop"},
    "faerec": {"max_len": 50, "short_sequences": "train_only"},
}


@dataclass
class SplitConfig:
    """How to split sequences into examples.

    Attributes:
        protocol: ``pad`` or ``faerec`` (sets the defaults of the two fields below).
        max_len: history window L; 0 = the protocol's default (20 for pad, 50 for faerec).
        short_sequences: users with < 3 items: ``drop``, or ``train_only`` (train on the whole
            sequence, not evaluated); ``default`` = the protocol's choice.
        train_examples: ``shifted``, ``prefixes`` (module docstring) or ``auto``: the
            experiment picks ``shifted`` when the method's backbones are causal and
            ``prefixes`` otherwise (the data layer alone reads ``auto`` as ``shifted``).
        allow_look_ahead: let a non-causal backbone train on ``shifted`` windows, where it
            sees the items it is asked to predict. Off by default (the experiment refuses the
            combination); on only to reproduce releases that train this way (FMLP-Rec's and
            FAERec's train FMLP-Rec on shifted windows): their numbers, not a sound model.
    """

    protocol: Literal["pad", "faerec"] = "pad"
    max_len: int = 0
    short_sequences: Literal["default", "drop", "train_only"] = "default"
    train_examples: Literal["auto", "shifted", "prefixes"] = "auto"
    allow_look_ahead: bool = False

    def __post_init__(self) -> None:
        if self.max_len < 0:
            raise ValueError(f"max_len must be >= 0 (0 = the protocol's default), got {self.max_len}")

    def resolved(self) -> "SplitConfig":
        d = PROTOCOL_DEFAULTS[self.protocol]
        return SplitConfig(
            protocol=self.protocol,
            max_len=self.max_len or d["max_len"],
            short_sequences=d["short_sequences"] if self.short_sequences == "default" else self.short_sequences,
            train_examples="shifted" if self.train_examples == "auto" else self.train_examples,
            allow_look_ahead=self.allow_look_ahead,
        )


@dataclass
class EvalSet:
    """Evaluation examples: one (history, target) per user.

    Attributes:
        users: (U,) index into ``dataset.sequences``.
        histories: (U, L) int64, the last L items before the target, left-padded with 0.
        targets: (U,) int64 target item ids.
        seen_indptr, seen_items: CSR of every item the user interacted with before the
            target (the whole prior history, not only the window) for history masking.
    """

    users: np.ndarray
    histories: np.ndarray
    targets: np.ndarray
    seen_indptr: np.ndarray
    seen_items: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def seen(self, i: int) -> np.ndarray:
        return self.seen_items[self.seen_indptr[i] : self.seen_indptr[i + 1]]

    def subset(self, idx: np.ndarray) -> "EvalSet":
        """Examples ``idx`` (e.g. a random sample of users for fast validation)."""
        idx = np.asarray(idx, dtype=np.int64)
        starts, ends = self.seen_indptr[idx], self.seen_indptr[idx + 1]
        lens = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        items = (
            np.concatenate([self.seen_items[s:e] for s, e in zip(starts, ends)]) if len(idx) else np.zeros(0, np.int64)
        )
        return EvalSet(self.users[idx], self.histories[idx], self.targets[idx], indptr, items.astype(np.int64))

    def sample(self, n: int, seed: int) -> "EvalSet":
        """A fixed random sample of ``n`` examples (in their original order) drawn with ``seed``;
        the whole set when ``n`` is 0 or not smaller than it."""
        if not n or n >= len(self):
            return self
        idx = np.random.default_rng(seed).choice(len(self), size=n, replace=False)
        return self.subset(np.sort(idx))


@dataclass
class Split:
    """Train/valid/test examples under one protocol.

    Attributes:
        train_inputs: (T, L) int64 input windows, left-padded.
        train_targets: (T, L) int64 next-item targets aligned with ``train_inputs``; 0 where
            there is no target (padding).
        train_users: (T,) index into ``dataset.sequences``.
        valid, test: :class:`EvalSet` for validation and test.
        num_items: N.
        config: the resolved :class:`SplitConfig`.
    """

    train_inputs: np.ndarray
    train_targets: np.ndarray
    train_users: np.ndarray
    valid: EvalSet
    test: EvalSet
    num_items: int
    config: SplitConfig


def left_pad(seq: np.ndarray, length: int) -> np.ndarray:
    """Last ``length`` items of ``seq``, left-padded with zeros to exactly ``length``."""
    out = np.zeros(length, dtype=np.int64)
    tail = seq[-length:] if length > 0 else seq[:0]
    if len(tail):
        out[length - len(tail) :] = tail
    return out


def _eval_set(users: list[int], hists: list[np.ndarray], targets: list[int], max_len: int) -> EvalSet:
    histories = np.zeros((len(users), max_len), dtype=np.int64)
    lens = np.zeros(len(users) + 1, dtype=np.int64)
    for i, h in enumerate(hists):
        histories[i] = left_pad(h, max_len)
        lens[i + 1] = len(h)
    indptr = np.cumsum(lens)
    seen = np.concatenate(hists).astype(np.int64) if hists else np.zeros(0, np.int64)
    return EvalSet(np.asarray(users, np.int64), histories, np.asarray(targets, np.int64), indptr, seen)


# Training windows above this size are refused before they are allocated (one bad max_len
# would otherwise ask for hundreds of GB).
MAX_WINDOW_BYTES = 8 << 30


def _check_window_memory(dataset: SequenceDataset, cfg: SplitConfig) -> None:
    """Refuse a window so long that the training arrays alone would not fit in memory."""
    lengths = [len(s) for s in dataset.sequences]
    rows = sum(max(0, n - 3) for n in lengths) if cfg.train_examples == "prefixes" else len(lengths)
    need = 3 * rows * cfg.max_len * 8  # inputs and targets of training, histories of evaluation
    if need > MAX_WINDOW_BYTES:
        raise DataError(
            f"split.max_len = {cfg.max_len} would need {need / 2**30:.0f} GiB of training windows "
            f"({rows:,} examples × {cfg.max_len}); the longest sequence of '{dataset.name}' has "
            f"{max(lengths, default=0)} items, so a window above that only adds padding"
        )


def make_split(dataset: SequenceDataset, config: SplitConfig | None = None) -> Split:
    """Split ``dataset`` under ``config`` (see the module docstring for the protocols)."""
    cfg = (config or SplitConfig()).resolved()
    L = cfg.max_len
    if L < 1:
        raise DataError(f"split.max_len must be >= 1, got {L}")
    _check_window_memory(dataset, cfg)
    tr_in, tr_tg, tr_u = [], [], []
    ev = {"valid": ([], [], []), "test": ([], [], [])}
    for u, seq in enumerate(dataset.sequences):
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) < 3:
            if cfg.short_sequences == "drop" or len(seq) < 2:
                continue
            train = seq
        else:
            train = seq[:-2]
            for name, hist, tgt in (("valid", seq[:-2], seq[-2]), ("test", seq[:-1], seq[-1])):
                ev[name][0].append(u)
                ev[name][1].append(hist)
                ev[name][2].append(int(tgt))
        if len(train) < 2:
            continue
        if cfg.train_examples == "prefixes":
            for t in range(1, len(train)):
                tr_in.append(left_pad(train[:t], L))
                target = np.zeros(L, dtype=np.int64)
                target[-1] = train[t]
                tr_tg.append(target)
                tr_u.append(u)
        else:
            tr_in.append(left_pad(train[:-1], L))
            tr_tg.append(left_pad(train[1:], L))
            tr_u.append(u)
    if not tr_in:
        raise DataError(f"dataset '{dataset.name}': no training examples (every sequence is shorter than 3 items)")
    return Split(
        train_inputs=np.stack(tr_in),
        train_targets=np.stack(tr_tg),
        train_users=np.asarray(tr_u, np.int64),
        valid=_eval_set(*ev["valid"], L),
        test=_eval_set(*ev["test"], L),
        num_items=dataset.num_items,
        config=cfg,
    )
