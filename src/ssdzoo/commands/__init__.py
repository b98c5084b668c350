"""One module per `ssdzoo` command: ``HELP``, ``add_arguments(parser)``, ``run(args)``."""
