"""``magma-ros`` subcommands: each module has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.

Modules import heavy dependencies inside ``run`` so that ``magma-ros --help`` stays fast.
"""
