"""iqa-dupes: an example third-party iqa check that finds near-duplicate photos by perceptual hash."""

__version__ = "0.1.0"
