"""The ``tlbrace`` command line: ``cli.main`` (the entry point), one ``cmd_<name>`` module per subcommand,
the shared options and the exit statuses and errors (``cli.errors``).
"""
