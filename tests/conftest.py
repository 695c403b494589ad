"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny DepictQA checkpoint set in both variants, built once per session."""
    pytest.importorskip("torch", reason="the DepictQA fixture needs torch (pip install '.[depictqa]')")
    from iqa_cli.testing.tiny_depictqa import build_tiny_models

    root = tmp_path_factory.getbasetemp() / "depictqa-tiny"
    build_tiny_models(root, variant="dq495k")
    build_tiny_models(root, variant="abstractor")
    return root
