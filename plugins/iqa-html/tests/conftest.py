"""Fixtures shared by the writer and browser tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pagetools import save_image


@pytest.fixture
def photo(tmp_path: Path) -> Callable[..., str]:
    """Makes a real image under tmp_path/photos and returns its path as a row would carry it."""

    def make(name: str, **kw: Any) -> str:
        return str(save_image(tmp_path / "photos" / name, **kw))

    return make
