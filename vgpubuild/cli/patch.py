"""``vgpubuild patch`` (the whole pipeline) and ``vgpubuild demo`` (the same, on generated inputs)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vgpubuild.cli.common import JsonFlag, print_json, print_line
from vgpubuild.cli.fetch import (
    Attempts,
    CurlOpts,
    Insecure,
    Offline,
    RetryWait,
    Timeout,
    fetch_options,
)
from vgpubuild.cli.releases import ReleasesFile, user_releases
from vgpubuild.targets import CHOICES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from vgpubuild.artifact import BuildResult
    from vgpubuild.config import BuildConfig
    from vgpubuild.demo import DemoInputs

PATCH_HELP = """Build a patched vGPU driver tree for a release and print its Nix hash and store path.

Resolves the release, obtains and verifies every input (your GRID zip, the public .run
files, vGPU-Unlock-patcher at its pinned rev), runs patch.sh for the target, applies
profile overrides and copied profiles to vgpuConfig.xml and the project's patches, and
writes OUT/<patched tree name> with vgpubuild-manifest.json. The NAR hash and store path
printed are what `nix-store --add-fixed --recursive sha256` gives that folder. A second
run with the same inputs and options reuses the earlier artifact at once. On any failure
(or Ctrl-C) nothing is left in OUT.

--release demo builds the generated demo release with all of your options: rehearse
your real config (--config, --overrides, --clone, --repack) before you own a GRID zip.

Examples:

  vgpubuild patch --release 17.3 --zip ./NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip

  vgpubuild patch --release demo --config build.toml --repack

  vgpubuild patch --config build.toml --clone 1E07:0000=1E30:12BA --out ./result

  vgpubuild patch --release 17.3 --merged --extra --no-klogtrace --json
"""

DEMO_HELP = """Build the built-in demo release end to end and print its store path (make demo).

The demo release is generated, not NVIDIA's: a small GRID-shaped zip with tiny real .run
files and a stand-in patcher with patch.sh's command line. Every real stage runs on it.
A real build needs your own GRID zip: see `vgpubuild patch --help`.

Example: vgpubuild demo --out ./demo-out
"""


def _split_clone(value: str) -> tuple[str, str]:
    from vgpubuild.errors import UsageError

    new, sep, src = value.partition("=")
    if not sep or not new or not src:
        raise UsageError(
            f"--clone {value!r} is not NEW=SRC",
            hint="Write the new card then the card copied, e.g. --clone 1E07:0000=1E30:12BA.",
        )
    return new.strip(), src.strip()


def _cli_overrides(
    *,
    release: str | None,
    zip_location: str | None,
    target: str | None,
    guest: bool,
    merged: bool,
    no_force_gpl: bool,
    remap_p2v: bool,
    extra: list[str],
    clones: list[str],
    curl_opts: str | None,
) -> dict[str, Any]:
    """The flags as a partial build config (same shape as the file), unset ones left out."""
    options: dict[str, Any] = {"extra": extra}
    if no_force_gpl:
        options["doNotForceGPLLicense"] = True
    if remap_p2v:
        options["remapP40ProfilesToV100D"] = True
    patcher: dict[str, Any] = {"options": options}
    if target is not None:
        patcher["target"] = target
    if clones:
        patcher["copyVGPUProfiles"] = dict(_split_clone(c) for c in clones)
    data: dict[str, Any] = {"patcher": patcher}
    if release is not None:
        data["release"] = release
    if zip_location is not None:
        data["zip"] = zip_location
    if guest:
        data["guest"] = True
    if merged:
        data["merged"] = True
    if curl_opts:
        import shlex

        data["driverSource"] = {"curlOptsList": shlex.split(curl_opts)}
    return data


def _print_result(result: BuildResult, as_json: bool) -> None:
    from vgpubuild.handoff import nixos_snippet

    if as_json:
        data = result.to_json()
        if result.repacked is not None:
            data["repacked"]["nixos"] = nixos_snippet(result.repacked)
        print_json(data)
        return
    print_line(f"artifact:    {result.artifact}")
    print_line(f"NAR hash:    {result.nar_hash.sri}")
    print_line(f"store path:  {result.store_path}")
    print_line(f"add it with: {result.add_command}")
    if result.repacked is not None:
        print_line(f"repacked:    {result.repacked.path}")
        print_line(f"run sha256:  {result.repacked.flat_hash.sri}")
        print_line(f"run store:   {result.repacked.store_path}")
        print_line(f"add it with: {result.repacked.add_command}")
        print_line("")
        print_line(nixos_snippet(result.repacked).rstrip("\n"))


DEMO_NAMES = ("demo", "17.99")
"""What ``--release`` calls the demo release (``17.99`` is its version in manifests)."""


@contextlib.contextmanager
def _demo_inputs() -> Iterator[DemoInputs]:
    """The generated demo release in a temporary folder, removed afterwards."""
    from vgpubuild.demo import make_demo_inputs

    work = Path(tempfile.mkdtemp(prefix="vgpubuild-demo-inputs."))
    try:
        yield make_demo_inputs(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def patch_cmd(
    release: Annotated[
        str | None, typer.Option("--release", "-r", help="The vGPU release, e.g. 17.3.")
    ] = None,
    zip_location: Annotated[
        str | None,
        typer.Option("--zip", metavar="PATH|URL", help="Your GRID zip: a path or a URL."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="patch.sh target: " + ", ".join(CHOICES) + " (auto, the default, chooses "
            "as vgpu4nixos does).",
        ),
    ] = None,
    guest: Annotated[
        bool, typer.Option("--guest", help="Build the guest driver (target auto -> grid).")
    ] = False,
    merged: Annotated[
        bool,
        typer.Option(
            "--merged", help="Host driver merged with the desktop one (auto -> general-merge)."
        ),
    ] = False,
    patcher: Annotated[
        Path | None,
        typer.Option(
            "--patcher",
            metavar="DIR",
            help="A local vGPU-Unlock-patcher tree (checked against the catalog's hash).",
        ),
    ] = None,
    patcher_unverified: Annotated[
        bool,
        typer.Option("--patcher-unverified", help="Use --patcher DIR without checking its hash."),
    ] = False,
    no_force_gpl: Annotated[
        bool,
        typer.Option("--no-force-gpl", help="Do not pass the GPL flags (doNotForceGPLLicense)."),
    ] = False,
    remap_p2v: Annotated[
        bool,
        typer.Option(
            "--remap-p2v", help="Remap P40 profiles to V100D (remapP40ProfilesToV100D; 17.x)."
        ),
    ] = False,
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--extra", metavar="OPT", help="Another patch.sh option, e.g. --extra --no-klogtrace."
        ),
    ] = None,
    clone: Annotated[
        list[str] | None,
        typer.Option(
            "--clone",
            metavar="NEW=SRC",
            help="Copy a card's profiles to another, e.g. 1E07:0000=1E30:12BA (copyVGPUProfiles).",
        ),
    ] = None,
    overrides: Annotated[
        Path | None,
        typer.Option(
            "--overrides",
            metavar="FILE",
            help="TOML/JSON of profileOverrides (keys are profile ids) or of patcher.* edits.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Build config (TOML/JSON, the NixOS module's option names); flags override it.",
        ),
    ] = None,
    patch: Annotated[
        list[Path] | None,
        typer.Option("--patch", metavar="FILE", help="Your own patch (-p1) applied last."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="Folder that receives the artifact."),
    ] = Path("vgpubuild-out"),
    releases_file: ReleasesFile = None,
    offline: Offline = False,
    attempts: Attempts = 5,
    timeout: Timeout = 30.0,
    retry_wait: RetryWait = 1.0,
    curl_opts: CurlOpts = None,
    insecure: Insecure = False,
    repack: Annotated[
        bool, typer.Option("--repack", help="Also write OUT/<name>.run (single file, flat hash).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    from vgpubuild.cache import Cache
    from vgpubuild.config import BuildConfig, load_overrides_file
    from vgpubuild.pipeline import build
    from vgpubuild.targets import get_target

    if target not in (None, "auto"):
        get_target(target)  # an unknown --target is a usage error (exit 2)
    cfg = BuildConfig.load(config) if config is not None else BuildConfig()
    if overrides is not None:
        cfg = cfg.merged_with(load_overrides_file(overrides), source=str(overrides))
    cfg = cfg.merged_with(
        _cli_overrides(
            release=release,
            zip_location=zip_location,
            target=target,
            guest=guest,
            merged=merged,
            no_force_gpl=no_force_gpl,
            remap_p2v=remap_p2v,
            extra=extra or [],
            clones=clone or [],
            curl_opts=curl_opts,
        )
    )
    if releases_file is not None:
        own = {k: dict(v) for k, v in (user_releases(releases_file) or {}).items()}
        cfg = dataclasses.replace(cfg, releases={**own, **cfg.releases})
    options = fetch_options(offline, attempts, timeout, retry_wait, None, insecure, as_json)

    def run(cfg: BuildConfig, patcher_dir: Path | None) -> BuildResult:
        return build(
            cfg,
            out=out,
            cache=Cache(),
            fetch_options=options,
            patcher_dir=patcher_dir,
            patcher_unverified=patcher_unverified,
            extra_patches=patch or [],
            repack=repack,
        )

    if cfg.release in DEMO_NAMES and cfg.release not in cfg.releases:
        with _demo_inputs() as inputs:
            result = run(inputs.rehearsal(cfg), patcher or inputs.patcher_dir)
    else:
        result = run(cfg, patcher)
    _print_result(result, as_json)


def demo_cmd(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="Folder that receives the artifact."),
    ] = Path("demo-out"),
    as_json: JsonFlag = False,
) -> None:
    from vgpubuild.cache import Cache
    from vgpubuild.pipeline import build

    with _demo_inputs() as inputs:
        result = build(
            inputs.build_config(),
            out=out,
            cache=Cache(),
            fetch_options=fetch_options(True, 1, 30.0, 0.0, None, False, as_json),
            patcher_dir=inputs.patcher_dir,
        )
    _print_result(result, as_json)


def register(app: typer.Typer) -> None:
    app.command("patch", help=PATCH_HELP)(patch_cmd)
    app.command("demo", help=DEMO_HELP)(demo_cmd)
