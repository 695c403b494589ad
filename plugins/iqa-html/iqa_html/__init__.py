"""iqa-html: a self-contained HTML report writer for iqa, registered as the report format `html`."""

__version__ = "0.1.0"
