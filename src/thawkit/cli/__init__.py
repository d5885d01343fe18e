"""The ``thawkit`` command line: one module per group of subcommands, one app in ``app.py``."""
