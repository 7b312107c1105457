"""The command-line interface: a thin typer layer over the pipeline stages.

Each command module registers its commands with ``register(app)``; :mod:`vgpubuild.cli.root`
imports and builds only the module of the command invoked (``--help`` lists them from a
table), and :mod:`vgpubuild.cli.app` runs the plain forms of the hashing commands without
typer at all (:mod:`vgpubuild.cli.hashing`). Modules import stage modules inside command
bodies, so loading a command module stays cheap.
"""
