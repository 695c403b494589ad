"""The report: its one schema and row type, the writers, the bounded run summary, and reading a report back."""
