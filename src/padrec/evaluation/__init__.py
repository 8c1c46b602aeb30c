"""Evaluation: chunked full ranking, metrics by target group, reports and significance tests.

See docs/EVALUATION.md for the protocols, formulas and tie rule.
"""

from padrec.evaluation.metrics import (
    coverage,
    grouped_metrics,
    hit_rate,
    ndcg,
    parse_metric,
    per_user_hr,
    per_user_metric,
    per_user_ndcg,
    ranking_metrics,
    summarize,
    tail_coverage,
)
from padrec.evaluation.ranking import EvalConfig, ScoreFn, auto_chunk_users, evaluate
from padrec.evaluation.report import print_result, print_runs, result_tables
from padrec.evaluation.result import EvalResult
from padrec.evaluation.significance import (
    ComparisonRow,
    PairedTest,
    aggregate,
    compare_runs,
    paired_ttest,
    per_user_paired_test,
    print_comparison,
)

__all__ = [
    "ComparisonRow",
    "EvalConfig",
    "EvalResult",
    "PairedTest",
    "ScoreFn",
    "aggregate",
    "compare_runs",
    "coverage",
    "auto_chunk_users",
    "evaluate",
    "grouped_metrics",
    "hit_rate",
    "ndcg",
    "paired_ttest",
    "parse_metric",
    "per_user_hr",
    "per_user_metric",
    "per_user_ndcg",
    "per_user_paired_test",
    "print_comparison",
    "print_result",
    "print_runs",
    "ranking_metrics",
    "result_tables",
    "summarize",
    "tail_coverage",
]
