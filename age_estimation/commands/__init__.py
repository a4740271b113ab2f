"""One module per CLI subcommand, each with ``configure(parser)`` and ``run(args)``."""
