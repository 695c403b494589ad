"""Test support shipped with the package, so the tests of iqa and of its plugins share one set of helpers."""
