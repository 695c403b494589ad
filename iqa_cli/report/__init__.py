"""Report writers: Parquet, CSV and JSON Lines files, written atomically from streamed rows."""
