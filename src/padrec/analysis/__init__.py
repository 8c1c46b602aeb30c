"""Analyses of trained models (PAD paper Figs. 2, 3 and 6); see docs/ANALYSIS.md.

- :func:`compare_buckets` / :func:`plot_bucket_comparison`: two models per frequency bucket
  and warm/median/cold group, with relative lifts (Fig. 2).
- :func:`kendall_discrepancy` / :func:`plot_discrepancy`: Kendall's tau between two
  embedding tables' distances over (history, target) pairs, per bucket (Sec. 4.3, Fig. 6).
- :func:`distance_distributions` / :func:`plot_distance_distributions`: how the nearest and
  farthest 10% of item pairs by ID distance are spread in the ID and text spaces (Fig. 3).
"""

from padrec.analysis.buckets import compare_buckets, load_results, relative_lift, seed_result_files
from padrec.analysis.discrepancy import history_target_pairs, kendall_discrepancy, kendall_tau
from padrec.analysis.distances import (
    distance_distributions,
    overlap_coefficient,
    pair_distances,
    sample_item_pairs,
    separation_auc,
    split_near_far,
    summary_stats,
)
from padrec.analysis.plots import (
    plot_bucket_comparison,
    plot_discrepancy,
    plot_distance_distributions,
    save_figure_atomic,
    to_jsonable,
)

__all__ = [
    "compare_buckets",
    "distance_distributions",
    "history_target_pairs",
    "kendall_discrepancy",
    "kendall_tau",
    "load_results",
    "overlap_coefficient",
    "pair_distances",
    "plot_bucket_comparison",
    "plot_discrepancy",
    "plot_distance_distributions",
    "relative_lift",
    "sample_item_pairs",
    "save_figure_atomic",
    "seed_result_files",
    "separation_auc",
    "split_near_far",
    "summary_stats",
    "to_jsonable",
]
