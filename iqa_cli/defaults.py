"""The default values the command line shows and the library uses, in a module that imports nothing.

`iqa --help` and shell completion read these without loading the audit (numpy, Pillow, PyArrow); the modules that
act on them import them from here (`audit/load.py`, `audit/queue.py`, `audit/flag.py`, `rank/model.py`, `plugins.py`).
"""

from __future__ import annotations

AUTO = "auto"
"""The engine name meaning the DepictQA model when it is installed, else the signal engine (`create_engine`)."""

DEFAULT_MIN_CONFIDENCE = 0.6  # the authors' accuracy-by-confidence table drops sharply under .6

DEFAULT_MAX_PIXELS = 200_000_000
"""Images with more pixels than this (from the header) are refused as ``too_many_pixels``."""

DEFAULT_FILE_TIMEOUT = 120.0
"""Seconds one file may spend in a worker (load to measurements) before it is skipped as ``timeout``."""

PAIR_LIMIT = 12  # up to this many candidates every pair is asked (66 pairs, 132 answers)

LOCAL_RAY = "local"
"""`iqa audit --ray` with no address: a Ray started on this machine for the run (`audit/ray_audit.py`)."""
