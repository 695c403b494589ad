"""Use iqa from Python: audit a folder in one call, then list the worst images and the files that failed.

`iqa_cli.audit` takes the options of `iqa audit` as keywords and returns the rows (dicts with the report's
columns) and the summary; `to_pandas()` needs pandas, which iqa itself does not: pip install pandas.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import iqa_cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", help="image files and folders")
    parser.add_argument("--engine", default="signal", help="signal, depictqa or auto")
    parser.add_argument("--out", type=Path, help="also write report.parquet (and the results store) here")
    parser.add_argument("--workers", type=int, default=0, help="decode processes (0: in this process)")
    parser.add_argument("--worst", type=int, default=5, help="how many images to list")
    args = parser.parse_args()

    # Bad files do not raise: they come back as rows with status "error". Without out= nothing is written.
    result = iqa_cli.audit(
        args.paths,
        engine=args.engine,
        workers=args.workers,
        out=args.out,
        formats="parquet" if args.out else None,
    )
    s = result.summary
    print(f"{s.files} files, {s.assessed} assessed, {s.errors} errors: {s.verdicts}")

    # The lowest scores are the worst images.
    rows = result.to_pandas()
    assessed = rows[rows["status"] == "ok"].sort_values("score")
    for row in assessed.head(args.worst).itertuples():
        print(f"{row.score:.2f}  {row.verdict:<8}  {row.answer:<24}  {row.path}")
    for row in result.rows:
        if row["status"] == "error":
            print(f"error     {row['error_code']:<24}  {row['path']}")
    for report in result.reports:
        print(f"report: {report}")


if __name__ == "__main__":  # decoding processes import this file again: the call must not run then
    main()
