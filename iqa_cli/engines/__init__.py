"""Assessment engines: the built-in signal engine, the DepictQA-Wild model, and third-party ones."""
