"""The command-line interface: a thin typer layer over the pipeline stages.

Each module here registers one command group with :func:`register`. Modules import only
typer at load time and the stage modules inside command bodies, so ``--help`` stays fast.
"""
