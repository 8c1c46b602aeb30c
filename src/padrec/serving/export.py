"""Export a trained method for serving: ``serving.safetensors`` + ``serving.json``.

The weights are those of ``method.for_serving()`` (item vectors frozen into tables, per-item
gate weights precomputed). The JSON sidecar holds everything serving needs without the
dataset or the experiment config: the method and its resolved config, the phase, the raw
item ids (index = internal id; 0 = padding) and titles, the item statistics, the window and
the history handling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from padrec.data.stats import ItemStats
from padrec.methods import Method
from padrec.training.checkpoint import save_weights

SERVING_FORMAT = 3  # 3: text adapters (new items from text)


def export_serving(
    method: Method,
    run_dir: str | Path,
    meta: dict[str, Any],
    item_ids: list[str],
    titles: list[str],
    stats: ItemStats | None,
) -> Path:
    """Save ``method.for_serving()`` to ``run_dir/serving.safetensors`` (+ ``.json``).

    Args:
        meta: at least ``method``, ``method_config``, ``num_items``, ``max_len``, ``phase``
            and ``history_handling``.
        item_ids, titles: N+1 entries each, indexed by internal id.
        stats: the item statistics the method was built with (frequency-aware methods need them).
    """
    n = int(meta["num_items"])
    if len(item_ids) != n + 1 or len(titles) != n + 1:
        raise ValueError(f"export_serving: expected {n + 1} item ids and titles, got {len(item_ids)} and {len(titles)}")
    served = method.for_serving()
    text = method.context.text_embeddings
    path = Path(run_dir) / "serving.safetensors"
    sidecar = {
        **meta,
        "serving_format": SERVING_FORMAT,
        "text_dim": int(text.shape[1]) if text is not None else 0,
        "item_stats": stats.to_json() if stats is not None else None,
        "item_ids": list(item_ids),
        "titles": list(titles),
    }
    save_weights(served, path, sidecar)
    return path
