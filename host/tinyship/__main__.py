"""`python -m tinyship` runs the CLI."""

from tinyship.cli import main

main()
