"""Fixtures shared by the near-duplicate tests."""

from __future__ import annotations

import pytest
from dupestools import EDITS


@pytest.fixture(params=sorted(EDITS))
def edit(request: pytest.FixtureRequest) -> str:
    """The name of one edit in dupestools.EDITS."""
    return request.param
