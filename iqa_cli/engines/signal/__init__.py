"""The built-in `signal` engine: DepictQA-shaped answers from pixel measurements and small learned trees."""

from iqa_cli.engines.signal.engine import SignalEngine

__all__ = ["SignalEngine"]
