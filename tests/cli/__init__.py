"""The command-line tool and its install."""
