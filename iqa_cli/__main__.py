"""`python -m iqa_cli` runs the command-line tool."""

from iqa_cli.cli.app import main

main()
