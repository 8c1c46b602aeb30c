"""``padrec reproduce``: the papers' tables, one command each (see :mod:`padrec.reproduce.tables`)."""

from padrec.reproduce.report import markdown, write_report
from padrec.reproduce.runner import COLUMNS, configs_dir, row_status, run_table, summarize_table
from padrec.reproduce.tables import TABLES, Row, Table

__all__ = [
    "COLUMNS",
    "TABLES",
    "Row",
    "Table",
    "configs_dir",
    "markdown",
    "row_status",
    "run_table",
    "summarize_table",
    "write_report",
]
