"""``vgpubuild nix-builder`` and ``vgpubuild cache``: vgpubuild as Nix's builder and cache."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from vgpubuild.cli.common import JsonFlag, print_json, print_line

cache_app = typer.Typer(
    help="vgpubuild's own cache (list, clean) and Nix binary cache folders (export).\n\n"
    "Example: vgpubuild cache list",
    no_args_is_help=True,
)


@cache_app.command("export")
def cache_export_cmd(
    artifact: Annotated[
        Path,
        typer.Argument(
            help="Artifact folder, .run file, or store path (e.g. ./result).", metavar="ARTIFACT"
        ),
    ],
    to: Annotated[
        Path, typer.Option("--to", help="Binary cache folder to add it to (created if needed).")
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Store name for a folder or file (default: its name)."),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help="Secret key from nix-store --generate-binary-cache-key to sign the entry.",
        ),
    ] = None,
    compression: Annotated[
        str,
        typer.Option(
            "--compression",
            help="NAR compression: zstd (default), xz (smaller, slower) or none.",
            metavar="zstd|xz|none",
        ),
    ] = "zstd",
    as_json: JsonFlag = False,
) -> None:
    """Add ARTIFACT to a binary cache folder that nix copy and substituters read.

    Folders and files get the store path nix-store --add-fixed gives them (content-addressed,
    trusted without a signature); a store path such as ./result keeps its own and needs a
    signature (--sign-key) or --no-check-sigs on the receiving side. Several artifacts can
    share one cache; what is already in it is never rewritten.

    Example: vgpubuild cache export ./result --to /srv/vgpu-cache --sign-key cache.sec

    Example: vgpubuild cache export ./NVIDIA-Linux-x86_64-550.90.05-vgpu-kvm-patched --to ./cache --compression xz
    """
    from vgpubuild.binarycache import export

    result = export(artifact, to, name=name, secret_key_file=sign_key, compression=compression)
    if as_json:
        print_json({**result.to_json(), "cache": str(to)})
        return
    url = f"file://{to.resolve()}"
    print_line(result.store_path)
    print_line(f"nar hash: {result.info.path.nar_hash.sri}")
    if result.kept:
        print_line(f"already in the cache ({result.info.compression}); kept as it is")
    trust = ""
    if result.public_key:
        print_line(f"public key: {result.public_key}")
        trust = f" --option trusted-public-keys {shlex.quote(result.public_key)}"
    elif not result.info.path.content_address:
        trust = " --no-check-sigs"
    print_line(
        f"fetch with: nix --extra-experimental-features nix-command copy --from {url}{trust} "
        f"{result.store_path}"
    )


def nix_builder_cmd() -> None:
    """Build the patched driver as a Nix derivation's builder (run by Nix, not by hand).

    Reads the derivation's attributes from $NIX_ATTRS_JSON_FILE (__structuredAttrs) or from
    the environment, takes inputs only from the paths given there, never uses the network,
    and writes the artifact to $out. See docs/nix.md for the attributes.

    Example: builder = "${vgpubuild}/bin/vgpubuild"; args = [ "nix-builder" ];
    """
    import os

    from vgpubuild.builder import run

    run(os.environ)


def register(app: typer.Typer) -> None:
    from vgpubuild.cli import cachedir

    app.command("nix-builder")(nix_builder_cmd)
    cachedir.register(cache_app)
    app.add_typer(cache_app, name="cache")
