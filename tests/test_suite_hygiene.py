"""The suite's own rules, checked on its source: a tool's output never fails to decode.

A tool may print bytes that are not UTF-8 (Nix does, in build logs); decoding them
strictly turns a failed assertion into a ``UnicodeDecodeError`` that hides the text.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRICT = [
    re.compile(r"text=True(?!,\s*errors=)"),
    re.compile(r"(?:stdout|stderr)(?:\.read\(\))?\.decode\(\)"),
]


def test_tool_output_is_decoded_without_raising() -> None:
    found = []
    for folder in ("tests", "bench"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name == Path(__file__).name:
                continue
            text = path.read_text()
            for pattern in STRICT:
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    found.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert not found, "decode with errors='backslashreplace':\n" + "\n".join(found)
