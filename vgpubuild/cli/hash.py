"""``vgpubuild hash|nar|store``: Nix's hashing, NAR and store paths, without Nix.

The typer declarations only; the bodies are in :mod:`vgpubuild.cli.hashing`, where the
fast lane of :mod:`vgpubuild.cli.app` calls them without loading typer at all.
"""

from __future__ import annotations

from typing import Annotated

import typer

from vgpubuild.cli import hashing
from vgpubuild.cli.common import JsonFlag
from vgpubuild.cli.hashing import FLAT, NAME, OUTPUT, RECURSIVE, TO, TYPE

hash_app = typer.Typer(
    help="Hash files and trees exactly as Nix does.\n\n"
    "Example: vgpubuild hash file --to base32 ./driver.zip",
    no_args_is_help=True,
)
nar_app = typer.Typer(
    help="Write NAR archives (nix-store --dump).\n\nExample: vgpubuild nar dump ./tree > tree.nar",
    no_args_is_help=True,
)
store_app = typer.Typer(
    help="Compute Nix store paths without Nix.\n\nExample: vgpubuild store path --flat ./file.zip",
    no_args_is_help=True,
)

FORM_HELP = "Output form: sri, nix32 (Nix also calls it base32), base16 or base64."
FormOption = Annotated[str, typer.Option(*TO, help=FORM_HELP, metavar="FORM")]
TypeOption = Annotated[
    str, typer.Option(*TYPE, help="Hash algorithm (sha256, sha512, sha1, md5).", metavar="ALGO")
]
# Plain str, not Path: typer's Path checks would pre-empt our own one-line errors.
FilesArg = Annotated[
    list[str], typer.Argument(help="Files to hash; - reads standard input.", metavar="FILE...")
]
TreesArg = Annotated[
    list[str], typer.Argument(help="Files or directories to hash.", metavar="PATH...")
]


@hash_app.command("file")
def hash_file_cmd(
    paths: FilesArg, to: FormOption = "sri", algo: TypeOption = "sha256", as_json: JsonFlag = False
) -> None:
    """Flat hash of each file's bytes (nix hash file, nix-hash --flat, nix-prefetch-url).

    Example: vgpubuild hash file --to base32 NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip
    """
    hashing.hash_file(paths, to, algo, as_json)


@hash_app.command("path")
def hash_path_cmd(
    paths: TreesArg, to: FormOption = "sri", algo: TypeOption = "sha256", as_json: JsonFlag = False
) -> None:
    """Recursive (NAR) hash of each file or tree (nix hash path, nix-hash --type sha256 PATH).

    Example: vgpubuild hash path ./NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-patched --to nix32
    """
    hashing.hash_path(paths, to, algo, as_json)


@hash_app.command("convert")
def hash_convert_cmd(
    value: Annotated[
        str, typer.Argument(help="A hash in any form: hex, nix32, base64 or SRI.", metavar="HASH")
    ],
    to: FormOption = "sri",
    algo: Annotated[
        str | None, typer.Option(*TYPE, help="Algorithm when the hash has no prefix.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Convert a hash between forms (nix hash to-sri / to-base32 / to-base16).

    Example: vgpubuild hash convert sha256:1r3v22qkypccqifzbww5lrn6hf1chi23m6zzkyvb8bvg457nxslq --to base16
    """
    hashing.hash_convert(value, to, algo, as_json)


@nar_app.command("dump")
def nar_dump_cmd(
    path: Annotated[
        str, typer.Argument(help="File, symlink or directory to serialise.", metavar="PATH")
    ],
    output: Annotated[
        str | None,
        typer.Option(*OUTPUT, help="Write to this file instead of stdout.", metavar="FILE"),
    ] = None,
) -> None:
    """Write the NAR serialisation of PATH, byte-for-byte as nix-store --dump.

    Example: vgpubuild nar dump ./tree > tree.nar
    """
    hashing.nar_dump(path, output)


@store_app.command("path")
def store_path_cmd(
    path: Annotated[
        str, typer.Argument(help="File or directory that would be added.", metavar="PATH")
    ],
    name: Annotated[
        str | None, typer.Option(*NAME, help="Store name (default: the path's base name).")
    ] = None,
    flat: Annotated[
        bool, typer.Option(*FLAT, help="As nix-store --add-fixed sha256 FILE (file bytes).")
    ] = False,
    recursive: Annotated[
        bool,
        typer.Option(*RECURSIVE, help="As nix-store --add / --add-fixed --recursive (default)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Print the store path Nix would give PATH, without adding it.

    Example: vgpubuild store path --flat NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip
    """
    hashing.store_path(path, name, flat, recursive, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(hash_app, name="hash")
    app.add_typer(nar_app, name="nar")
    app.add_typer(store_app, name="store")
