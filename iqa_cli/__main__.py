"""`python -m iqa_cli` runs the command-line tool."""

from iqa_cli.cli import main

if __name__ == "__main__":  # not when a spawned worker re-imports this module as `__mp_main__`
    main()
