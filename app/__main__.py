"""`python -m app`: the command line (see app/cli/main.py)."""

from app.cli.main import main

main()
