"""Ranking processed images: pair schedules and Bradley-Terry (`model.py`), running them (`run.py`)."""
