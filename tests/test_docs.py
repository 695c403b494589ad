"""The README stays true to the code: its opening commands and its schema table."""

from __future__ import annotations

from pathlib import Path

from iqa_cli.report.schema import COLUMNS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_opens_with_install_and_test_commands() -> None:
    block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].startswith("pip install . && iqa audit examples/")
    assert "python -m pytest" in block[1]


def test_readme_schema_lists_every_column_with_its_type() -> None:
    for name, dtype, meaning in COLUMNS:
        shown = str(dtype).replace("list<element: ", "list<")
        assert f"| `{name}` | {shown} | {meaning} |" in README, name
