"""The Method interface: what the trainer trains, the evaluator ranks and serving exports.

A Method composes item representations, backbones, gates and losses, and lists its training
phases as :class:`Phase` objects: each phase says which submodules it trains, which losses it
sums and how it scores. The base class dispatches ``losses`` and ``score_all`` to the current
phase, so a method never branches on a phase name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from padrec.config import fingerprint_fields
from padrec.data.stats import ItemStats
from padrec.methods.batches import StepInfo, TrainBatch
from padrec.models.backbones import BACKBONES
from padrec.models.experts import Expert
from padrec.models.items.precomputed import PrecomputedItems, freeze_item_tables
from padrec.registry import Registry


@dataclass
class ScoreFactors:
    """A served method's scores as one inner product: ``score_all(h) == query(h) @ items.T``.

    Attributes:
        items: (N+1, D') item matrix (row 0 padding).
        query: (B, L) left-padded histories -> (B, D') query vectors.
        parts: named column blocks of the two (PAD: one per expert); the dot product over a
            block is that part's share of the score (``score_parts``).
        rows: (M,) item ids -> (M, D') their rows of ``items`` as the method now scores them
            (after ``add_items``: only the changed rows need recomputing).
    """

    items: torch.Tensor
    query: Callable[[torch.Tensor], torch.Tensor]
    parts: dict[str, slice]
    rows: Callable[[torch.Tensor], torch.Tensor] | None = None


class NewItemsUnsupported(ValueError):
    """The method ranks items by trained ID vectors only, so it cannot place items from text."""


LossFn = Callable[[Any, "StepInfo | None"], dict[str, torch.Tensor]]
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class MethodContext:
    """What a method may know about the data when it is built.

    Attributes:
        num_items: N (item ids 1..N, 0 = padding).
        max_len: history window L.
        item_stats: per-item frequency, buckets and groups (N+1 rows).
        text_embeddings: optional frozen (N+1)×D float tensor of item text embeddings,
            row 0 = zeros.
        item_texts: the rendered item texts (N+1 strings, ``""`` for padding), for methods that
            read raw text (``Method.needs_item_texts``).
        domain: ``domain(name) -> Domain``: another dataset's training data and item texts,
            prepared with the run's split and text settings (multi-domain training, CALRec).
        work_dir: the run directory, where a method may keep caches of its own.
    """

    num_items: int
    max_len: int
    item_stats: ItemStats | None = None
    text_embeddings: torch.Tensor | None = None
    item_texts: list[str] | None = None
    domain: Callable[[str], Domain] | None = None
    work_dir: Path | None = None


@dataclass
class Domain:
    """One dataset as a method that trains on several reads it.

    Attributes:
        name: the dataset's name.
        split: its split under the run's protocol (training windows, valid and test sets).
        item_texts: its rendered item texts (N+1 strings, ``""`` for padding).
    """

    name: str
    split: Any
    item_texts: list[str]


@dataclass
class Phase:
    """One training phase of a method.

    Attributes:
        name: phase name (``train`` for single-phase methods; PAD: ``pretrain``,
            ``pretrain_llm``, ``align``, ``disentangle``).
        losses: ``losses(batch, step) -> {name: scalar}``; the trainer minimises the sum.
            ``step`` (:class:`StepInfo`) says the epoch and step, for curricula.
        score: ``score(histories (B, L)) -> (B, N+1)`` scores, used for validation and for
            evaluating a run that ended in this phase.
        trains: names of the submodules (or parameters) this phase updates (None = all).
        frozen: submodules kept in eval mode while this phase trains (fixed experts).
        start: called when the phase begins (e.g. copy weights from an earlier phase).
        overrides: training settings this phase changes (e.g. ``{"lr": 1e-4}``), applied
            over the run's ``TrainConfig`` (the run's ``phase_train`` wins over them).
        after: the earlier phases whose weights this phase starts from or uses (None = every
            earlier phase); a phase is not retrained when only an unrelated phase changes.
        batches: ``batches(split, settings) -> BatchBuilder`` when the phase does not train
            on the split's id windows (:class:`~padrec.methods.batches.WindowBatches`).
    """

    name: str
    losses: LossFn
    score: ScoreFn
    trains: list[str] | None = None
    frozen: list[str] = field(default_factory=list)
    start: Callable[[], None] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    after: list[str] | None = None
    batches: Callable[..., Any] | None = None


class Method(nn.Module):
    """Base class of every recommender the trainer can run.

    Subclasses set ``config_class`` (a dataclass whose fields may say, through
    :func:`padrec.config.setting` metadata, which phases read them) and implement
    ``phases()``. Class-level capabilities read before the method is built:
    ``needs_text(config)`` (item text embeddings must be prepared; ``requires_text = True``
    says so for every config) and ``causal(config)`` (every backbone is causal, so training
    may use every position of a window; by default the backbone named by ``config.backbone``).
    """

    config_class: ClassVar[type]
    requires_text: ClassVar[bool] = False

    def __init__(self, config: Any, context: MethodContext) -> None:
        if type(self).needs_text(config) and context.text_embeddings is None:
            raise ValueError(f"{type(self).__name__} needs item text embeddings (MethodContext.text_embeddings)")
        super().__init__()
        self.config = config
        self.context = context
        self.num_items = context.num_items
        self._phase: Phase | None = None  # the first phase until begin_phase (resolved lazily)

    # --- capabilities -----------------------------------------------------------------
    @classmethod
    def needs_text(cls, config: Any) -> bool:
        """True when the method reads item text embeddings (``MethodContext.text_embeddings``)."""
        return cls.requires_text

    @classmethod
    def needs_item_texts(cls, config: Any) -> bool:
        """True when the method reads the rendered item texts (``MethodContext.item_texts``)."""
        return False

    @classmethod
    def causal(cls, config: Any) -> bool:
        """True when every backbone the method builds is causal (see ``Backbone.causal``): the
        registered backbone named by ``config.backbone`` when the config has one, else True."""
        name = getattr(config, "backbone", None)
        return BACKBONES.get(name).causal if isinstance(name, str) else True

    # --- phases -----------------------------------------------------------------------
    def phases(self) -> list[Phase]:  # pragma: no cover
        """The ordered phases; single-phase methods have one named ``train``."""
        raise NotImplementedError

    def phase_named(self, name: str) -> Phase:
        """The phase called ``name``; an error lists the method's phases."""
        for p in self.phases():
            if p.name == name:
                return p
        raise ValueError(
            f"method '{type(self).__name__}' has no phase {name!r}; phases: {[p.name for p in self.phases()]}"
        )

    @property
    def phase(self) -> str:
        """Name of the current phase."""
        return self.current_phase.name

    @property
    def current_phase(self) -> Phase:
        """The current :class:`Phase` (the first one until :meth:`begin_phase`)."""
        if self._phase is None:
            self._phase = self.phases()[0]
        return self._phase

    def begin_phase(self, name: str) -> None:
        """Make ``name`` the current phase and run its ``start``."""
        self._phase = self.phase_named(name)
        if self._phase.start is not None:
            self._phase.start()
        self.train(self.training)

    def set_phase(self, name: str) -> None:
        """Make ``name`` the current phase without running its ``start`` (for reloading weights
        saved at the end of that phase)."""
        self._phase = self.phase_named(name)
        self.train(self.training)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates in the current phase (each once, in order): those of
        the submodules (or the parameters themselves) the phase's ``trains`` names."""
        names = self.current_phase.trains
        groups = [self.parameters()] if names is None else [self._named_parameters(n) for n in names]
        seen: set[int] = set()
        out = []
        for group in groups:
            for p in group:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def _named_parameters(self, name: str) -> list[nn.Parameter]:
        """The parameters of submodule ``name``, or ``[parameter name]``."""
        try:
            return list(self.get_submodule(name).parameters())
        except AttributeError:
            try:
                return [self.get_parameter(name)]
            except AttributeError:
                raise ValueError(
                    f"phase '{self.phase}' trains {name!r}, which is neither a submodule nor a "
                    f"parameter of {type(self).__name__}"
                ) from None

    def train(self, mode: bool = True) -> Method:
        """As ``nn.Module.train``; the current phase's ``frozen`` submodules stay in eval mode."""
        super().train(mode)
        for name in self.current_phase.frozen:
            self.get_submodule(name).eval()
        return self

    # --- training and scoring ---------------------------------------------------------
    def losses(self, batch: TrainBatch, step: StepInfo | None = None) -> dict[str, torch.Tensor]:
        """Named scalar losses of the current phase for one batch; the trainer minimises their sum."""
        return self.current_phase.losses(batch, step)

    def forward(self, batch: TrainBatch, step: StepInfo | None = None) -> dict[str, torch.Tensor]:
        """Same as :meth:`losses` (so data-parallel wrappers, which call ``forward``, work)."""
        return self.losses(batch, step)

    def score_all(self, histories: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each history, as the current phase scores.

        Args:
            histories: (B, L) int64 left-padded histories.
        Returns:
            (B, N+1) float scores; column 0 (padding) is ignored by the evaluator.
        """
        return self.current_phase.score(histories)

    def fingerprint_config(self, phase: Phase) -> dict[str, Any]:
        """The method-config fields ``phase``'s results depend on (from the config's field
        metadata, see :func:`padrec.config.setting`), as plain values."""
        return fingerprint_fields(self.config, phase.name)

    # --- saving, reporting and serving --------------------------------------------------
    def saved_state_keys(self) -> set[str] | None:
        """The state-dict keys a finished run saves in ``model.safetensors`` (None = all). A
        method built on large frozen weights it can rebuild (a pretrained LM) saves only what
        it trained."""
        return None

    def serving_unsupported(self) -> str | None:
        """Why this method cannot be exported for serving, or None when it can."""
        return None

    def report(self) -> dict[str, Any]:
        """JSON-friendly facts about the trained model worth keeping with its results (e.g. PAD's
        expert weights per frequency bucket); written to ``results.json`` as ``method_report``."""
        return {}

    def item_embeddings(self) -> dict[str, torch.Tensor]:
        """Named (N+1)×d item-vector tables for analyses (e.g. ``{"id": ..., "text": ...}``)."""
        return {}

    def for_serving(self, copy_model: bool = True) -> Method:
        """What serving needs: this method (a deep copy unless ``copy_model=False``) in eval mode
        with every expert's item vectors frozen into tables, so that a request runs only the
        backbones and one matrix product per expert (no text encoder, MLP or fusion).
        Methods with more that does not depend on the user (PAD's per-item gate weights)
        precompute it here too. ``score_all`` of the result equals this method's in eval mode.
        """
        served = copy.deepcopy(self) if copy_model else self
        served.eval()
        freeze_item_tables(served)
        return served

    def score_parts(self, histories: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named (B, N+1) components whose sum is ``score_all`` (PAD: each expert's weighted
        logits), for explaining a recommendation; one-component methods return ``{"score": ...}``."""
        return {"score": self.score_all(histories)}

    # --- serving: one inner product, new items from text --------------------------------
    def score_factors(self) -> ScoreFactors | None:
        """The served scores as one inner product (for a single matrix product per request and
        for ANN indexes), or None when they are not one. Default: a method with one
        :class:`~padrec.models.experts.Expert` in ``self.expert`` scoring by dot product."""
        expert = getattr(self, "expert", None)
        if not isinstance(expert, Expert):
            return None
        table = expert.items.all()

        def rows(ids: torch.Tensor) -> torch.Tensor:
            return expert.items.all()[ids]

        return ScoreFactors(table, expert.sequence_vector, {"score": slice(0, table.shape[1])}, rows)

    def item_tables(self) -> list[PrecomputedItems]:
        """The frozen item tables of a served method (after :meth:`for_serving`)."""
        return [m for m in self.modules() if isinstance(m, PrecomputedItems)]

    def new_items_unsupported(self) -> str | None:
        """Why :meth:`add_items` cannot work on this served method, or None when it can (some
        expert reads item text through an adapter)."""
        tables = self.item_tables()
        if not tables:
            return f"{type(self).__name__} is not in its serving form (call for_serving first)"
        if not any(t.reads_text for t in tables):
            return (
                f"{type(self).__name__} ranks items by ID vectors learned in training only; it cannot "
                "rank items it was not trained on (train a text-based method, e.g. PAD or FAERec)"
            )
        return None

    @torch.no_grad()
    def add_items(self, ids: torch.Tensor, text: torch.Tensor) -> None:
        """Place items from their raw text embeddings in every expert that reads text (serving).

        Args:
            ids: (M,) int64 ids: 1..N update an item's text, N+1.. add items (together they must
                leave no gap, so the catalogue stays 1..N').
            text: (M, D) raw text embeddings (as the run's encoder makes them).
        Experts without text give new items zero vectors (:meth:`PrecomputedItems.set_items`).
        Raises :class:`NewItemsUnsupported` when no expert reads text.
        """
        why = self.new_items_unsupported()
        if why is not None:
            raise NewItemsUnsupported(why)
        new_n = max(self.num_items, int(ids.max()))
        if int(ids.min()) < 1 or torch.unique(ids).numel() != ids.numel():
            raise ValueError("add_items: ids must be distinct and >= 1")
        new_ids = set(range(self.num_items + 1, new_n + 1))
        if not new_ids <= set(ids.tolist()):
            raise ValueError(f"add_items: new ids must be {self.num_items + 1}..{new_n} with no gap")
        for table in self.item_tables():
            table.set_items(ids, text)
        self.num_items = new_n


METHODS: Registry[Method] = Registry("method", Method)


def saved_phase(method: Method, saved: str | None, where: str = "saved run") -> str:
    """The phase a saved run ended in (``saved``; runs that did not record it: the last phase);
    ``where`` names the file it was read from, for the error."""
    names = [p.name for p in method.phases()]
    phase = saved or names[-1]
    if phase not in names:
        raise ValueError(f"{where}: 'phase' is {phase!r}, which this method does not have (phases: {names})")
    return phase
