"""Thin Typer commands: each parses options and wires the parts together (`app.py` assembles them)."""
