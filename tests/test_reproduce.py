"""``padrec reproduce``: every row of a table over seeds, reuse, report files and tests."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from padrec.cli import app
from padrec.reproduce import TABLES, Row, Table, markdown, row_status

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def tiny_table(tmp_path, toy_dataset, monkeypatch):
    rows = [
        {"user_id": f"u{u}", "item_id": f"i{item}", "timestamp": t}
        for u, seq in enumerate(toy_dataset.sequences)
        for t, item in enumerate(seq)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "inter.csv", index=False)
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    common = f"""
data: {{format: interactions, name: toy, path: {tmp_path / "inter.csv"}, cache_dir: {tmp_path / "cache"}}}
split: {{protocol: pad, max_len: 10}}
stats: {{num_buckets: 4}}
train: {{epochs: 2, batch_size: 32, lr: 0.005, num_threads: 1}}
eval: {{ks: [5, 10]}}
"""
    (cfg_dir / "base.yaml").write_text(
        "method_config: {backbone: gru4rec, hidden_size: 8, backbone_config: {dropout: 0.1}}" + common
    )
    (cfg_dir / "better.yaml").write_text(
        "method_config: {backbone: sasrec, hidden_size: 16, backbone_config: {dropout: 0.1}}" + common
    )
    (cfg_dir / "other.yaml").write_text("method: no_such_method" + common)
    table = Table(
        "tiny",
        "A tiny table",
        (
            Row("base", "base.yaml"),
            Row("base_small_lr", "base.yaml", ("train.lr=0.001",)),
            Row("better", "better.yaml", role="method"),
            Row("missing", "missing.yaml"),
            Row("unimplemented", "other.yaml"),
        ),
        "claims nothing",
    )
    monkeypatch.setitem(TABLES, "tiny", table)
    return tmp_path, cfg_dir, table


def invoke(*args, code=0):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_rows_over_seeds_report_and_reuse(tiny_table):
    tmp, cfg_dir, table = tiny_table
    assert row_status(table.row("missing"), cfg_dir).startswith("unavailable: no config")
    assert "not implemented" in row_status(table.row("unimplemented"), cfg_dir)
    args = ["reproduce", "tiny", "--seeds", "1,2", "--configs", cfg_dir, "--runs-dir", tmp / "runs", "-o", tmp / "out"]
    out = invoke(*args)
    assert "[1/3] tiny: base" in out and "[3/3] tiny: better" in out and "min left" in out
    report = json.loads((tmp / "out" / "tiny_default.json").read_text())
    assert list(report["rows"]) == ["base", "base_small_lr", "better"]
    assert report["best_method"] == "better" and report["best_baseline"] in ("base", "base_small_lr")
    assert report["headline"]["NDCG@10"]["over"] == "seeds" and report["headline"]["NDCG@10"]["n"] == 2
    for row in report["rows"].values():
        assert row["seeds"] == [1, 2]
        mean, std = row["metrics"]["NDCG@10"]
        assert 0 < mean < 1 and std >= 0
        per_seed = [s["NDCG@10"] for s in row["per_seed"]]
        assert mean == pytest.approx(sum(per_seed) / 2)
    assert report["status"]["missing"].startswith("unavailable") and report["status"]["base"] == "ok"
    md = (tmp / "out" / "tiny_default.md").read_text()
    assert "| better | method |" in md and "Not run: missing" in md and "Best method **better**" in md
    assert (tmp / "out" / "tiny_default.png").read_bytes()[:4] == b"\x89PNG"

    state = tmp / "runs" / "tiny" / "default" / "base" / "seed_1" / "train" / "best.safetensors"
    before = state.stat().st_mtime_ns
    out = invoke(*args)  # everything finished: reused, same report
    assert "reused" in out
    assert state.stat().st_mtime_ns == before
    again = json.loads((tmp / "out" / "tiny_default.json").read_text())
    assert again["rows"]["better"]["metrics"] == report["rows"]["better"]["metrics"]


def test_one_seed_tests_over_users_and_only_reports_finished_rows(tiny_table):
    tmp, cfg_dir, _ = tiny_table
    common = ["--seeds", "3", "--configs", cfg_dir, "--runs-dir", tmp / "runs", "-o", tmp / "out"]
    invoke("reproduce", "tiny", "--only", "better", *common)
    report = json.loads((tmp / "out" / "tiny_default.json").read_text())
    assert list(report["rows"]) == ["better"] and report["headline"] is None
    invoke("reproduce", "tiny", "--only", "base", *common)  # better (done) is reported beside it
    report = json.loads((tmp / "out" / "tiny_default.json").read_text())
    assert set(report["rows"]) == {"base", "better"}
    assert report["headline"]["NDCG@10"]["over"] == "users"
    users = json.loads((tmp / "runs" / "tiny" / "default" / "better" / "seed_3" / "results.json").read_text())
    assert report["headline"]["NDCG@10"]["n"] == users["test"]["num_users"] == len(users["test"]["per_user"]["ranks"])
    assert "Best method **better**" in markdown(report)


def test_kept_results_are_reported_without_training(tiny_table):
    tmp, cfg_dir, _ = tiny_table
    common = ["--seeds", "3", "--configs", cfg_dir, "-o", tmp / "out"]
    invoke("reproduce", "tiny", "--only", "better", "--runs-dir", tmp / "runs", *common)
    done = (tmp / "runs" / "tiny" / "default" / "better" / "seed_3" / "results.json").read_bytes()
    kept = tmp / "kept" / "tiny" / "default" / "better" / "seed_3"  # results.json only, as restored
    kept.mkdir(parents=True)
    (kept / "results.json").write_bytes(done)
    out = invoke("reproduce", "tiny", "--only", "better", "--runs-dir", tmp / "kept", *common)
    assert "better reported from kept results" in out and "[1/" not in out
    report = json.loads((tmp / "out" / "tiny_default.json").read_text())
    assert list(report["rows"]) == ["better"] and sorted(p.name for p in kept.iterdir()) == ["results.json"]


def test_bad_requests_exit_2(tiny_table):
    tmp, cfg_dir, _ = tiny_table
    common = ["--configs", cfg_dir, "--runs-dir", tmp / "runs", "-o", tmp / "out"]
    assert "unknown table" in invoke("reproduce", "nope", *common, code=2)
    assert "no row" in invoke("reproduce", "tiny", "--only", "nope", *common, code=2)
    assert "--seeds" in invoke("reproduce", "tiny", "--seeds", "1,x", *common, code=2)
    listing = invoke("reproduce", "--list", "--configs", cfg_dir)
    assert "tiny" in listing and "pad-table2" in listing and "unavailable: no config missing.yaml" in listing


def test_every_shipped_table_names_configs_or_known_gaps():
    """Every row of the shipped tables points at a shipped config, or at a baseline still to come."""
    from padrec.reproduce import configs_dir

    cfg_dir = configs_dir()
    for table in TABLES.values():
        assert len({r.name for r in table.rows}) == len(table.rows), table.name
        roles = {r.role for r in table.rows}
        assert "method" in roles, table.name
        for row in table.rows:
            status = row_status(row, cfg_dir)
            assert status == "ok" or status.startswith("unavailable"), (table.name, row.name, status)
            if row.reuse_from:
                table.row(row.reuse_from)


def test_data_flag_sets_what_train_data_sets():
    """`padrec reproduce --data X` rows are the runs `padrec train --data X` makes (same data config)."""
    from padrec.data.loading import resolve_dataset
    from padrec.reproduce.runner import _data_sets

    assert _data_sets(None) == []
    want = resolve_dataset("prime_pantry")
    assert _data_sets("prime_pantry") == [f"data.format={want.format}", "data.name=prime_pantry", "data.path="]
    assert want.format == "builtin"
