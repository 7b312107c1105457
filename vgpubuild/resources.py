"""Locate the project's data folders (``profiles/``, ``patches/``).

In a source checkout or editable install they sit beside the package; a wheel carries them
as ``vgpubuild/_data/<name>`` (see pyproject's force-include). One lookup serves both.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder holding the project's ``name`` data (``profiles`` or ``patches``)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"vgpubuild data folder {name!r} is missing from this install")
