"""Measuring an engine on labelled images: metrics, labelled sets made with the DQ-495K distortions, runs."""
