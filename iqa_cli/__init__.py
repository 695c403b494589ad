"""iqa: audit the quality of photo collections with a vision-language model or pixel measurements."""

__version__ = "0.1.0"
