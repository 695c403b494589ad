"""Use iqa as a library: audit a folder with the signal engine, write Parquet, print the worst images.

Reads the report back with pandas, which iqa itself does not need: pip install pandas.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from iqa_cli.audit import AuditSettings, run_audit
from iqa_cli.engines.base import EngineOptions
from iqa_cli.engines.signal.engine import SignalEngine
from iqa_cli.report.writers import ParquetWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", help="image files and folders")
    parser.add_argument("--out", type=Path, default=Path("iqa-api-report"), help="folder for report.parquet")
    parser.add_argument("--workers", type=int, default=0, help="decode processes (0: in this process)")
    parser.add_argument("--worst", type=int, default=5, help="how many images to list")
    args = parser.parse_args()

    # The same three parts the CLI wires together: settings, an engine, writers.
    settings = AuditSettings(paths=args.paths, workers=args.workers)
    engine = SignalEngine.create(EngineOptions())
    args.out.mkdir(parents=True, exist_ok=True)
    writer = ParquetWriter(args.out)
    try:
        # Bad files do not raise: they come back as rows with status "error".
        summary = run_audit(settings, engine, [writer])
    finally:
        engine.close()
    print(f"{summary.files} files, {summary.assessed} assessed, {summary.errors} errors: {summary.verdicts}")

    # The report holds every row; the lowest scores are the worst images.
    rows = pd.read_parquet(writer.path)
    assessed = rows[rows["status"] == "ok"].sort_values("score")
    for row in assessed.head(args.worst).itertuples():
        print(f"{row.score:.2f}  {row.verdict:<8}  {row.answer:<24}  {row.path}")
    for row in rows[rows["status"] == "error"].itertuples():
        print(f"error     {row.error_code:<24}  {row.path}")
    print(f"report: {writer.path}")


if __name__ == "__main__":
    main()
