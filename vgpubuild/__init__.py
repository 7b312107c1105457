"""vgpubuild: reproducible builds of patched NVIDIA vGPU drivers.

The package is a pipeline of small stages (see docs/architecture.md); ``vgpubuild.cli`` is a thin
typer layer over them and nothing below it imports the CLI.
"""

__version__ = "0.1.0"
