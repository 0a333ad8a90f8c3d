"""The command-line tool (`autoenhance-batch`, `python -m app`); it imports no web server."""
