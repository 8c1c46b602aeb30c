"""Run a named suite of padrec experiments over several seeds and tabulate the results.

Each entry is a config file plus ``--set`` overrides; every run goes through the ordinary
``padrec train`` code path (``run_training``) and leaves its run directory under
``--runs-dir``. Finished phases whose inputs are unchanged are reused, so variants that only
differ in a later phase share their earlier phases (the suite copies the reference run's
phase directories into each variant's directory before it starts).

Usage:
    python benchmarks/run_suite.py id --seeds 1,2,3
    python benchmarks/run_suite.py pad --seeds 1,2,3
    python benchmarks/run_suite.py pad-ablations --seeds 1
    python benchmarks/run_suite.py faerec --seeds 1,2,3
    python benchmarks/run_suite.py faerec-ablations --seeds 1

Run one suite at a time on an otherwise idle machine. With other jobs on the same cores, set
``OMP_WAIT_POLICY=PASSIVE`` (spinning threads of two jobs then stop fighting), at the cost of
about 20% per job on an idle machine (SASRec epoch 6.0 s -> 7.5 s on Prime Pantry).

Results: benchmarks/results/suite_<name>.json (per-run summaries, paired t-tests against the
suite's baseline) and a printed table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# The LLM expert on its own: PAD with only that expert and a fixed gate (phase 3 trains nothing).
LLM_ONLY = ["method_config.experts=[llm]", "method_config.gate=none"]

# FAERec's training recipe for an ID-only backbone (configs/faerec.yaml's loss and optimiser).
FAEREC_RECIPE = ["method_config.loss=bce", "train.lr=0.001", "train.patience=10"]
FAEREC_LRUREC = ["method_config.backbone=lrurec", "method_config.backbone_config={num_layers: 2, dropout: 0.2}"]

# name -> (baseline run, [(run name, config file, [--set overrides], reuse phases from)])
SUITES: dict[str, tuple[str, list[tuple[str, str, list[str], str | None]]]] = {
    "id": (
        "sasrec",
        [
            ("sasrec", "sasrec.yaml", [], None),
            ("gru4rec", "gru4rec.yaml", [], None),
        ],
    ),
    "pad": (
        "sasrec",
        [
            ("sasrec", "sasrec.yaml", [], None),
            ("pad", "pad.yaml", [], None),
        ],
    ),
    # RQ2: alignment variants; RQ3: kernels. All share phase 1 with "pad".
    "pad-alignment": (
        "pad",
        [
            ("pad", "pad.yaml", [], None),
            ("pad_no_alignment", "pad.yaml", ["method_config.alignment=none"], "pad"),
            ("pad_non_anchored", "pad.yaml", ["method_config.anchoring=non_anchored"], "pad"),
            ("pad_anchored_frozen_id", "pad.yaml", ["method_config.anchoring=anchored_frozen_id"], "pad"),
            ("pad_laplacian", "pad.yaml", ["method_config.alignment=mmd_laplacian"], "pad"),
            ("pad_linear", "pad.yaml", ["method_config.alignment=mmd_linear"], "pad"),
            ("pad_cosine", "pad.yaml", ["method_config.alignment=mmd_cosine"], "pad"),
            ("pad_infonce", "pad.yaml", ["method_config.alignment=infonce"], "pad"),
        ],
    ),
    # RQ5: ablations of phase 3 (share phases 1-2 with "pad").
    "pad-ablations": (
        "pad",
        [
            ("pad", "pad.yaml", [], None),
            ("pad_no_id", "pad.yaml", ["method_config.experts=[align,llm]"], "pad"),
            ("pad_no_align", "pad.yaml", ["method_config.experts=[id,llm]"], "pad"),
            ("pad_no_llm", "pad.yaml", ["method_config.experts=[id,align]"], "pad"),
            ("pad_only_align", "pad.yaml", ["method_config.experts=[align]"], "pad"),
            ("pad_only_llm", "pad.yaml", ["method_config.experts=[llm]"], "pad"),
            ("pad_no_gate", "pad.yaml", ["method_config.gate=none"], "pad"),
            ("pad_learned_gate", "pad.yaml", ["method_config.gate=learned"], "pad"),
            ("pad_network_gate", "pad.yaml", ["method_config.gate=network"], "pad"),
        ],
    ),
    # padrec's design choices for PAD on Prime Pantry (docs/PAD.md): the LLM expert alone under
    # several text adapters and logit adjustments, and phase 3 trained jointly (release) or
    # gate-only at three learning rates. Share phase 1 (and the others where unchanged) with "pad".
    "pad-design": (
        "pad",
        [
            ("pad", "pad.yaml", [], None),
            (
                "llm_release_mlp",
                "pad.yaml",
                LLM_ONLY
                + [
                    "method_config.text_mlp_layers=4",
                    "method_config.text_final_activation=true",
                    "method_config.text_input_norm=none",
                    "method_config.llm_logit_adjustment=0",
                ],
                "pad",
            ),
            (
                "llm_linear_gelu",
                "pad.yaml",
                LLM_ONLY
                + [
                    "method_config.text_final_activation=true",
                    "method_config.text_input_norm=none",
                    "method_config.llm_logit_adjustment=0",
                ],
                "pad",
            ),
            ("llm_linear", "pad.yaml", LLM_ONLY + ["method_config.llm_logit_adjustment=0"], "pad"),
            ("llm_linear_la05", "pad.yaml", LLM_ONLY, "pad"),
            ("llm_linear_la1", "pad.yaml", LLM_ONLY + ["method_config.llm_logit_adjustment=1"], "pad"),
            (
                "pad_joint_phase3",
                "pad.yaml",
                ["method_config.llm_pretrain=false", "method_config.frozen_in_phase3=[]"],
                "pad",
            ),
            ("pad_gate_lr1e-2", "pad.yaml", ["phase_train.disentangle.lr=0.01"], "pad"),
            ("pad_gate_lr1e-4", "pad.yaml", ["phase_train.disentangle.lr=0.0001"], "pad"),
        ],
    ),
    # RQ7: other backbones.
    "pad-backbones": (
        "gru4rec",
        [
            ("gru4rec", "gru4rec.yaml", [], None),
            (
                "pad_gru4rec",
                "pad.yaml",
                ["method_config.backbone=gru4rec", "method_config.backbone_config={dropout: 0.3}"],
                None,
            ),
            ("caser", "caser.yaml", [], None),
            ("pad_caser", "pad_caser.yaml", [], None),
        ],
    ),
    # FAERec against its backbone (same recipe: BCE with one negative, Adam 1e-3, patience 10)
    # on PAD's split, beside padrec's CE SASRec and PAD (issue 11, evidence 2 and 3).
    "faerec": (
        "sasrec_bce",
        [
            ("sasrec_bce", "sasrec.yaml", FAEREC_RECIPE, None),
            ("faerec", "faerec.yaml", [], None),
            ("lrurec_bce", "lrurec.yaml", FAEREC_RECIPE, None),
            ("faerec_lrurec", "faerec.yaml", FAEREC_LRUREC, None),
            ("sasrec", "sasrec.yaml", [], None),
            ("pad", "pad.yaml", [], None),
        ],
    ),
    # FAERec's ablation table (its Table 3), SASRec backbone.
    "faerec-ablations": (
        "faerec",
        [
            ("faerec", "faerec.yaml", [], None),
            ("faerec_no_gating", "faerec.yaml", ["method_config.gating=false"], None),
            ("faerec_no_item_alignment", "faerec.yaml", ["method_config.item_alignment=false"], None),
            ("faerec_no_feature_alignment", "faerec.yaml", ["method_config.feature_alignment=false"], None),
            ("faerec_no_curriculum", "faerec.yaml", ["method_config.curriculum=false"], None),
            ("faerec_no_popularity_grouping", "faerec.yaml", ["method_config.popularity_grouping=false"], None),
        ],
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", choices=sorted(SUITES))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--runs-dir", default="runs/bench")
    ap.add_argument("--only", default="", help="comma-separated run names to run (default all)")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra override for every run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="results JSON (default benchmarks/results/suite_<suite>.json)")
    args = ap.parse_args()

    import torch

    from padrec.commands.train import build_config_dict, run_training
    from padrec.evaluation import paired_ttest
    from padrec.io import write_json

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    baseline, runs = SUITES[args.suite]
    only = set(filter(None, args.only.split(",")))
    runs_dir = Path(args.runs_dir)
    out: dict = {"suite": args.suite, "seeds": seeds, "baseline": baseline, "runs": {}}
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"suite_{args.suite}.json"
    if out_path.exists():
        out["runs"] = json.loads(out_path.read_text()).get("runs", {})
    out["runs"] = {k: v for k, v in out["runs"].items() if len(v["per_seed"]) == len(seeds)}
    for name, cfg_file, sets, reuse_from in runs:
        if only and name not in only:
            continue
        run_dir = runs_dir / name
        if reuse_from:
            for s in seeds:
                src = runs_dir / reuse_from / f"seed_{s}"
                for phase in ("pretrain", "pretrain_llm", "align"):
                    if (src / phase / "state.json").exists() and not (run_dir / f"seed_{s}" / phase).exists():
                        shutil.copytree(src / phase, run_dir / f"seed_{s}" / phase)
        raw = build_config_dict(
            CONFIGS / cfg_file,
            {"name": name, "output_dir": str(run_dir), "train.progress": False, "train.num_threads": args.threads},
            sets + args.extra,
        )
        t0 = time.perf_counter()
        summary = run_dir / "summary.json"
        if summary.exists() and json.loads(summary.read_text())["seeds"] == seeds and name in out["runs"]:
            print(f"{name}: finished earlier with seeds {seeds}; reusing", file=sys.stderr)
            continue
        if summary.exists() and json.loads(summary.read_text())["seeds"] == seeds:
            results = [json.loads((run_dir / f"seed_{s}" / "results.json").read_text()) for s in seeds]
        else:
            results = run_training(raw, seeds)
        wall = time.perf_counter() - t0
        out["runs"][name] = {
            "config": cfg_file,
            "overrides": sets + args.extra,
            "wall_seconds": wall,
            "per_seed": [r["test"]["overall"] for r in results],
            "by_group": [r["test"]["by_group"] for r in results],
            "head_tail": [r["test"].get("head_tail", {}) for r in results],
            "coverage": [r["test"].get("coverage", {}) for r in results],
            "by_popularity": [r["test"].get("by_popularity", {}) for r in results],
            "phases": [
                [
                    {
                        k: p[k]
                        for k in (
                            "phase",
                            "best_epoch",
                            "best_value",
                            "epochs_run",
                            "seconds_per_epoch",
                            "train_seconds",
                            "stopped",
                        )
                    }
                    for p in r["phases"]
                ]
                for r in results
            ],
            "method_report": [r.get("method_report", {}) for r in results],
            "total_seconds": [r["total_seconds"] for r in results],
            "peak_rss_mb": [r["peak_rss_mb"] for r in results],
        }
        write_json(out_path, out)

    base = out["runs"].get(baseline)
    print(f"\nsuite {args.suite}: test metrics, mean ± std over seeds {seeds}")
    header = f"{'run':28s} {'HR@10':>17s} {'NDCG@10':>17s} {'NDCG@10 cold':>17s}  lift   p(NDCG@10)"
    print(header)
    import numpy as np

    for name, r in out["runs"].items():
        hr = np.array([m["HR@10"] for m in r["per_seed"]])
        nd = np.array([m["NDCG@10"] for m in r["per_seed"]])
        cold = np.array([g["cold"]["NDCG@10"] or 0.0 for g in r["by_group"]])
        line = (
            f"{name:28s} {hr.mean():.4f} ± {hr.std(ddof=1) if len(hr) > 1 else 0:.4f}"
            f" {nd.mean():.4f} ± {nd.std(ddof=1) if len(nd) > 1 else 0:.4f}"
            f" {cold.mean():.4f} ± {cold.std(ddof=1) if len(cold) > 1 else 0:.4f}"
        )
        if base is not None and name != baseline and len(base["per_seed"]) == len(r["per_seed"]):
            t = paired_ttest(nd.tolist(), [m["NDCG@10"] for m in base["per_seed"]])
            r["vs_baseline"] = {"lift": t.lift, "p": t.p, "t": t.t}
            line += f"  {t.lift:+.1%}  {t.p:.3g}"
        print(line)
    write_json(out_path, out)
    print(f"written {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
