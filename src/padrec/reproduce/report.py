"""A reproduced table as Markdown, JSON and a bar plot (mean ± std NDCG@10 per row)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["markdown", "write_report"]

_HEADERS = {
    "HR@10": "HR@10",
    "NDCG@10": "NDCG@10",
    "warm/NDCG@10": "warm N@10",
    "median/NDCG@10": "median N@10",
    "cold/NDCG@10": "cold N@10",
    "tail/HR@10": "tail H@10",
    "tail/NDCG@10": "tail N@10",
    "Coverage@10": "Cov@10",
    "TailCoverage@10": "TCov@10",
}


def _cell(mean_std: tuple[float, float] | list[float]) -> str:
    mean, std = mean_std
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown section: a row per run, the headline test, unavailable rows."""
    cols = report["columns"]
    lines = [
        f"### {report['title']}",
        "",
        f"Data: {report.get('data') or 'as configured'}; backbone: {report.get('backbone') or 'as configured'}; "
        f"seeds {', '.join(map(str, report['seeds']))}; mean ± std over seeds (ddof 1).",
        "",
        "| row | role | " + " | ".join(_HEADERS.get(c, c) for c in cols) + " | NDCG@10 vs best method (p) |",
        "|---|---|" + "---|" * len(cols) + "---|",
    ]
    for name, r in report["rows"].items():
        vs = r.get("vs_best_method")
        vs_txt = f"{vs['lift']:+.1%} ({vs['p']:.2g}, {vs['over']})" if vs else ""
        lines.append(f"| {name} | {r['role']} | " + " | ".join(_cell(r["metrics"][c]) for c in cols) + f" | {vs_txt} |")
    h = report.get("headline")
    lines.append("")
    if h:
        n, hr = h["NDCG@10"], h["HR@10"]
        lines.append(
            f"Best method **{h['method']}** against best baseline **{h['baseline']}**: NDCG@10 {n['lift']:+.2%} "
            f"(paired t-test over {n['over']}, p = {n['p']:.3g}); HR@10 {hr['lift']:+.2%} (p = {hr['p']:.3g})."
        )
    if report.get("notes"):
        lines.append(f"Paper: {report['notes']}")
    missing = {k: v for k, v in report.get("status", {}).items() if v != "ok"}
    if missing:
        lines.append("")
        lines.append("Not run: " + "; ".join(f"{k} ({v})" for k, v in missing.items()) + ".")
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from padrec.io import atomic_path

    names = list(report["rows"])
    means = [report["rows"][n]["metrics"]["NDCG@10"][0] for n in names]
    stds = [report["rows"][n]["metrics"]["NDCG@10"][1] for n in names]
    colors = {"baseline": "#8c8c8c", "method": "#d62728", "variant": "#ff9896", "reference": "#1f77b4"}
    width = max(4.0, 0.7 * len(names) + 1.5)
    fig, ax = plt.subplots(figsize=(width, 3.6))
    ax.bar(names, means, yerr=stds, capsize=3, color=[colors[report["rows"][n]["role"]] for n in names])
    ax.set_ylabel("test NDCG@10 (mean ± std)")
    title = f"{report['title']} ({report.get('data') or 'default data'})"
    ax.set_title(textwrap.fill(title, width=int(width * 11)), fontsize=9)  # ~11 characters per inch at 9 pt
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``<table>_<data>.json``, ``.md`` and ``.png`` under ``out_dir`` (atomically)."""
    from padrec.io import write_json, write_text

    out_dir = Path(out_dir)
    stem = f"{report['table']}_{report.get('data') or 'default'}" + (
        f"_{report['backbone']}" if report.get("backbone") else ""
    )
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    write_json(paths["json"], report)
    write_text(paths["md"], markdown(report))
    if report["rows"]:
        _plot(report, paths["png"])
    else:
        paths.pop("png")
    return paths
