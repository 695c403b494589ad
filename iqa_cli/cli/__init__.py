"""Thin Typer commands: each parses options and wires the parts together (`app.py` assembles them)."""


def main() -> None:
    """The `iqa` console script.

    The commands are imported here, not when this package is: a spawned decode worker re-imports the module
    that started its parent (the console script, which imports this one), and must not pay for Typer, Rich,
    PyArrow and every command again (about 0.7 s of CPU and 40 MiB per worker)."""
    from iqa_cli.cli.app import app

    app()
