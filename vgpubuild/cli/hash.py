"""``vgpubuild hash|nar|store``: Nix's hashing, NAR and store paths, without Nix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vgpubuild.cli.common import JsonFlag, print_json, print_line

if TYPE_CHECKING:
    from vgpubuild.nixhash import Hash, HashForm

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
FORM_ALIASES = {"base32": "nix32"}
"""Nix's own names for a form (``nix hash to-base32``, ``nix-hash --base32``)."""
FormOption = Annotated[str, typer.Option("--to", "--format", "-f", help=FORM_HELP, metavar="FORM")]
TypeOption = Annotated[
    str, typer.Option("--type", help="Hash algorithm (sha256, sha512, sha1, md5).", metavar="ALGO")
]
# Plain str, not Path: typer's Path checks would pre-empt our own one-line errors.
FilesArg = Annotated[
    list[str], typer.Argument(help="Files to hash; - reads standard input.", metavar="FILE...")
]
TreesArg = Annotated[
    list[str], typer.Argument(help="Files or directories to hash.", metavar="PATH...")
]


def _debug(event: str, **values: object) -> None:
    """A debug log event (-v); structlog is imported only when it will be shown."""
    from vgpubuild import log

    if log.is_enabled_for(log.DEBUG):
        log.get_logger().debug(event, **values)


def _as_json(h: Hash, **extra: str) -> dict[str, str]:
    from vgpubuild.nixhash import HASH_FORMS

    return {**extra, "algo": h.algo, **{f: h.format(f) for f in HASH_FORMS}}


def _emit(h: Hash, form: str, as_json: bool, **extra: str) -> None:
    if as_json:
        print_json(_as_json(h, **extra))
    else:
        print_line(h.format(_check_form(form)))


def _emit_all(hashed: list[tuple[str, Hash]], form: str, as_json: bool) -> None:
    """One line per path, in order (as ``nix hash file A B``); JSON: one object, or a list."""
    if as_json and len(hashed) > 1:
        print_json([_as_json(h, path=p) for p, h in hashed])
        return
    for path, h in hashed:
        _emit(h, form, as_json, path=path)


def _check_form(form: str) -> HashForm:
    from vgpubuild.errors import UsageError
    from vgpubuild.nixhash import HASH_FORMS

    form = FORM_ALIASES.get(form, form)
    if form not in HASH_FORMS:
        raise UsageError(
            f"unknown hash form {form!r}",
            hint=f"Use one of: {', '.join(HASH_FORMS)} (base32 is nix32).",
        )
    return form


@hash_app.command("file")
def hash_file_cmd(
    paths: FilesArg, to: FormOption = "sri", algo: TypeOption = "sha256", as_json: JsonFlag = False
) -> None:
    """Flat hash of each file's bytes (nix hash file, nix-hash --flat, nix-prefetch-url).

    Example: vgpubuild hash file --to base32 NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip
    """
    import time

    from vgpubuild.nixhash import hash_file

    _check_form(to)
    hashed = []
    for path in paths:
        start = time.monotonic()
        h = hash_file("/dev/stdin" if path == "-" else path, algo)
        _debug("hashed file", path=path, algo=algo, seconds=round(time.monotonic() - start, 3))
        hashed.append((path, h))
    _emit_all(hashed, to, as_json)


@hash_app.command("path")
def hash_path_cmd(
    paths: TreesArg, to: FormOption = "sri", algo: TypeOption = "sha256", as_json: JsonFlag = False
) -> None:
    """Recursive (NAR) hash of each file or tree (nix hash path, nix-hash --type sha256 PATH).

    Example: vgpubuild hash path ./NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-patched --to nix32
    """
    import time

    from vgpubuild.nar import nar_hash

    _check_form(to)
    hashed = []
    for path in paths:
        start = time.monotonic()
        h = nar_hash(path, algo)
        _debug("hashed NAR", path=path, algo=algo, seconds=round(time.monotonic() - start, 3))
        hashed.append((path, h))
    _emit_all(hashed, to, as_json)


@hash_app.command("convert")
def hash_convert_cmd(
    value: Annotated[
        str, typer.Argument(help="A hash in any form: hex, nix32, base64 or SRI.", metavar="HASH")
    ],
    to: FormOption = "sri",
    algo: Annotated[
        str | None, typer.Option("--type", help="Algorithm when the hash has no prefix.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Convert a hash between forms (nix hash to-sri / to-base32 / to-base16).

    Example: vgpubuild hash convert sha256:1r3v22qkypccqifzbww5lrn6hf1chi23m6zzkyvb8bvg457nxslq --to base16
    """
    from vgpubuild.nixhash import Hash

    _check_form(to)
    _emit(Hash.parse(value, algo), to, as_json)


@nar_app.command("dump")
def nar_dump_cmd(
    path: Annotated[
        str, typer.Argument(help="File, symlink or directory to serialise.", metavar="PATH")
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", help="Write to this file instead of stdout.", metavar="FILE"
        ),
    ] = None,
) -> None:
    """Write the NAR serialisation of PATH, byte-for-byte as nix-store --dump.

    Example: vgpubuild nar dump ./tree > tree.nar
    """
    import sys

    from vgpubuild import nar
    from vgpubuild.atomic import atomic_file
    from vgpubuild.errors import UsageError

    if output is None:
        if sys.stdout.isatty():
            raise UsageError(
                "refusing to write a binary NAR to a terminal",
                hint="Redirect stdout (> file.nar, | command) or use --output FILE.",
            )
        nar.dump(path, sys.stdout.buffer)
        return
    with atomic_file(output) as f:
        nar.dump(path, f)
    _debug("wrote NAR", path=path, output=output)


@store_app.command("path")
def store_path_cmd(
    path: Annotated[
        str, typer.Argument(help="File or directory that would be added.", metavar="PATH")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Store name (default: the path's base name).")
    ] = None,
    flat: Annotated[
        bool, typer.Option("--flat", help="As nix-store --add-fixed sha256 FILE (file bytes).")
    ] = False,
    recursive: Annotated[
        bool,
        typer.Option("--recursive", help="As nix-store --add / --add-fixed --recursive (default)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Print the store path Nix would give PATH, without adding it.

    Example: vgpubuild store path --flat NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip
    """
    from vgpubuild.errors import UsageError
    from vgpubuild.store import Ingestion, path_for

    if flat and recursive:
        raise UsageError("--flat and --recursive exclude each other", hint="Pick one.")
    ingestion: Ingestion = "flat" if flat else "recursive"
    content, store_path = path_for(path, ingestion, name)
    if as_json:
        print_json(
            {
                "path": path,
                "ingestion": ingestion,
                "hash": content.sri,
                "store_path": store_path,
            }
        )
    else:
        print_line(store_path)


def register(app: typer.Typer) -> None:
    app.add_typer(hash_app, name="hash")
    app.add_typer(nar_app, name="nar")
    app.add_typer(store_app, name="store")
