"""`mde-ros` sub-commands. Each module exposes add_arguments(parser) and run(args) -> exit code."""
