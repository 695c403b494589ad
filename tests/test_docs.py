"""The README and the row type stay true to the schema: the opening commands, the schema table, ReportRow."""

from __future__ import annotations

from pathlib import Path

from iqa_cli.report.schema import COLUMN_NAMES, COLUMNS, ReportRow

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_opens_with_install_and_test_commands() -> None:
    block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].startswith("pip install . && iqa audit examples/")
    assert "python -m pytest" in block[1]


def test_readme_schema_lists_every_column_with_its_type() -> None:
    for name, dtype, meaning in COLUMNS:
        shown = str(dtype).replace("list<element: ", "list<")
        assert f"| `{name}` | {shown} | {meaning} |" in README, name


def test_report_row_type_has_every_column_in_order() -> None:
    assert list(ReportRow.__annotations__) == COLUMN_NAMES
