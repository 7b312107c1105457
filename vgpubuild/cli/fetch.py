"""``vgpubuild fetch|prefetch|add``: get inputs into the verified cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vgpubuild.cli.common import JsonFlag, print_json, print_line
from vgpubuild.cli.releases import ReleasesFile, user_releases

if TYPE_CHECKING:
    from vgpubuild.fetch import FetchOptions
    from vgpubuild.nixadd import NixAdd
    from vgpubuild.nixhash import Hash

Offline = Annotated[
    bool, typer.Option("--offline", help="Never use the network: cache, paths and Nix store only.")
]
Attempts = Annotated[
    int, typer.Option("--attempts", min=1, help="Download attempts before giving up.")
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", min=0.01, help="Seconds to wait for a connection or for data."),
]
RetryWait = Annotated[
    float,
    typer.Option(
        "--retry-wait", min=0.0, help="First wait between attempts in seconds (then doubles)."
    ),
]
CurlOpts = Annotated[
    str | None,
    typer.Option(
        "--curl-opts",
        help='curl options for credentials, as one string: "-u user:pass", '
        "\"-H 'X-Token: t'\", --netrc-file F, --cacert F, -k. Prefer ~/.netrc to typing "
        "secrets on the command line.",
    ),
]
Insecure = Annotated[
    bool,
    typer.Option("-k", "--insecure", help="Do not verify TLS certificates (explicit opt-out)."),
]


def fetch_options(
    offline: bool,
    attempts: int,
    timeout: float,
    retry_wait: float,
    curl_opts: str | None,
    insecure: bool,
    as_json: bool,
) -> FetchOptions:
    from vgpubuild.credentials import parse_curl_opts
    from vgpubuild.fetch import FetchOptions

    return FetchOptions(
        offline=offline,
        attempts=attempts,
        timeout=timeout,
        retry_wait=retry_wait,
        credentials=parse_curl_opts(curl_opts) if curl_opts else None,
        insecure=insecure,
        progress=not as_json,
    )


def fetch_cmd(
    release: Annotated[str, typer.Option("--release", "-r", help="GRID release, e.g. 17.3.")],
    guest: Annotated[
        bool, typer.Option("--guest", help="Fetch the guest driver instead of the host's.")
    ] = False,
    merged: Annotated[
        bool, typer.Option("--merged", help="Also fetch the consumer driver a merged build needs.")
    ] = False,
    zip_location: Annotated[
        str | None, typer.Option("--zip", help="The GRID zip: a path, file:// or http(s) URL.")
    ] = None,
    source_name: Annotated[
        str | None, typer.Option("--source-name", help="driverSource.name (file name).")
    ] = None,
    source_url: Annotated[
        str | None, typer.Option("--source-url", help="driverSource.url (your own server).")
    ] = None,
    source_sha256: Annotated[
        str | None,
        typer.Option("--source-sha256", help="driverSource.sha256 (then a .run is expected)."),
    ] = None,
    no_patcher: Annotated[
        bool, typer.Option("--no-patcher", help="Leave out the release's vGPU-Unlock-patcher.")
    ] = False,
    releases_file: ReleasesFile = None,
    curl_opts: CurlOpts = None,
    offline: Offline = False,
    attempts: Attempts = 5,
    timeout: Timeout = 30.0,
    retry_wait: RetryWait = 1.0,
    insecure: Insecure = False,
    as_json: JsonFlag = False,
) -> None:
    """Obtain a release's inputs, verified, into the cache and print where they are.

    The driver files, then the release's vGPU-Unlock-patcher: afterwards `vgpubuild patch
    --offline` has everything. Looks in this order: --zip, the cache, the Nix store path
    nix-store --add-fixed would give, the URL. Options mirror the build config's driverSource.

    Example: vgpubuild fetch --release 17.3 --zip ./NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip
    """
    import shlex

    from vgpubuild.cache import Cache
    from vgpubuild.catalog import get_release
    from vgpubuild.config import DriverSource
    from vgpubuild.patchertree import fetch_patcher, require_cached_offline
    from vgpubuild.sources import driver_sources, obtain, require_on_hand

    options = fetch_options(offline, attempts, timeout, retry_wait, None, insecure, as_json)
    driver_source = DriverSource(
        name=source_name or "",
        url=source_url or "",
        sha256=source_sha256,
        curlOptsList=tuple(shlex.split(curl_opts)) if curl_opts else (),
    )
    rel = get_release(release, user_releases(releases_file))
    specs = driver_sources(rel, driver_source, guest=guest, zip_path=zip_location, merged=merged)
    cache = Cache()
    require_on_hand(specs, cache, options)  # the zip only you have: reported before downloads
    results = [(spec.name, spec.sha256, obtain(spec, cache, options)) for spec in specs]
    if rel.patcher is not None and not no_patcher:
        if offline:  # the tarballs are not files to add: say what brings the patcher
            require_cached_offline(rel.patcher, cache, rel)
        tree = fetch_patcher(rel.patcher, cache, options)
        results.append(("vGPU-Unlock-patcher", rel.patcher.sha256, tree))
    if as_json:
        print_json([{"name": n, "sha256": h.sri, "path": str(p)} for n, h, p in results])
        return
    for name, _, path in results:
        print_line(f"{name} {path}")


def prefetch_cmd(
    url: Annotated[str, typer.Argument(help="http(s)://, file:// URL or a path.", metavar="URL")],
    expected: Annotated[
        str | None,
        typer.Argument(
            help="Expected hash (any form); skips the download if cached.", metavar="HASH"
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="File name to store it under (default: from URL).")
    ] = None,
    print_path: Annotated[
        bool,
        typer.Option(
            "--print-path",
            help="Also print the file's path (its Nix store path with --nix-store).",
        ),
    ] = False,
    nix_store: Annotated[
        bool,
        typer.Option(
            "--nix-store", help="Also add it to the Nix store (nix-store --add-fixed sha256)."
        ),
    ] = False,
    curl_opts: CurlOpts = None,
    offline: Offline = False,
    attempts: Attempts = 5,
    timeout: Timeout = 30.0,
    retry_wait: RetryWait = 1.0,
    insecure: Insecure = False,
    as_json: JsonFlag = False,
) -> None:
    """Download URL into the cache and print its SRI hash, as nix-prefetch-url does.

    The hash alone goes to stdout; --print-path adds the path on a second line.

    Example: vgpubuild prefetch --print-path https://download.nvidia.com/XFree86/Linux-x86_64/550.90.07/NVIDIA-Linux-x86_64-550.90.07.run
    """
    from vgpubuild.cache import Cache, entry_hash
    from vgpubuild.fetch import download
    from vgpubuild.nixhash import Hash

    options = fetch_options(offline, attempts, timeout, retry_wait, curl_opts, insecure, as_json)
    want = Hash.parse(expected, "sha256") if expected else None
    path = download(url, want, Cache(), options, name=name)
    got = want or entry_hash(path)
    nix = _to_nix_store(path, got, nix_store)
    if as_json:
        print_json({"name": path.name, "sha256": got.sri, "path": str(path), **_nix_json(nix)})
        return
    print_line(got.sri)
    if print_path:
        print_line(nix.store_path if nix.added else str(path))


def add_cmd(
    file: Annotated[
        Path, typer.Argument(help="The file, e.g. a GRID zip you downloaded.", metavar="FILE")
    ],
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="Expected hash, for files the catalog does not list."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Store it under this name (default: file name).")
    ] = None,
    nix_store: Annotated[
        bool,
        typer.Option(
            "--nix-store/--no-nix-store",
            help="Also add it to the Nix store, where mkPatchedDriver's requireFile finds it "
            "(default: when nix-store is installed).",
        ),
    ] = True,
    releases_file: ReleasesFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a file against the catalog (by name and hash), then put it in the cache and the Nix store.

    Afterwards `vgpubuild patch` finds the file offline, and so does Nix: the store path is
    the one requireFile gives the catalog's name and hash (nix-store --add-fixed sha256).
    Without Nix, the command to run on the Nix machine is printed instead.

    Example: vgpubuild add ~/Downloads/NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip
    """
    from vgpubuild.cache import Cache
    from vgpubuild.catalog import release_for_file, release_for_hash
    from vgpubuild.errors import InputError, UsageError
    from vgpubuild.nixhash import Hash, hash_file
    from vgpubuild.store import check_name

    if file.is_dir():
        raise InputError(
            f"{str(file)!r} is a directory; vgpubuild add takes one file",
            hint="Give the GRID zip (or .run) file itself.",
        )
    extra = user_releases(releases_file)
    name = check_name(name, chosen=True) if name else file.name
    listed = release_for_file(name, extra)
    want = Hash.parse(sha256, "sha256") if sha256 else None
    if listed and want and want != listed[1]:
        raise UsageError(
            f"--sha256 differs from the catalog's hash of {name} (release {listed[0].version})",
            hint="Drop --sha256 to check against the catalog.",
        )
    release = listed[0].version if listed else None
    expected = want or (listed[1] if listed else None)
    if expected is None:
        # Not listed by name: maybe the file was renamed. Hash it (one read) and look.
        got = hash_file(file)
        by_hash = release_for_hash(got, extra)
        if by_hash is None:
            raise InputError(
                f"{name} is not a file of any known release (by name or by hash)",
                hint="Pass --sha256 HASH to add it anyway, or --releases FILE to define the "
                "release it belongs to.",
            )
        release, name = by_hash[0].version, by_hash[1]
        expected = got
    path = Cache().add_file(file, expected, name)
    nix = _to_nix_store(path, expected, nix_store)
    if as_json:
        print_json(
            {
                "name": name,
                "release": release,
                "sha256": expected.sri,
                "path": str(path),
                **_nix_json(nix),
            }
        )
        return
    print_line(f"cached:      {path}")
    if nix.added:
        print_line(f"nix store:   {nix.store_path}")
    else:
        print_line(f"add it with: {nix.command}")


def _to_nix_store(path: Path, sha256: Hash, wanted: bool) -> NixAdd:
    """Add a cached file to the Nix store when asked; say so on stderr when it could not be."""
    from vgpubuild import log
    from vgpubuild.nixadd import add_flat

    result = add_flat(path, sha256, run=wanted)
    if result.failed:
        log.get_logger().warning(
            "not added to the Nix store", reason=result.why_not, run=result.command
        )
    elif wanted and not result.added:
        log.get_logger().info("not added to the Nix store", reason=result.why_not)
    return result


def _nix_json(nix: NixAdd) -> dict[str, object]:
    return {
        "store_path": nix.store_path,
        "in_nix_store": nix.added,
        "add_command": nix.command,
    }


def register(app: typer.Typer) -> None:
    app.command("fetch")(fetch_cmd)
    app.command("prefetch")(prefetch_cmd)
    app.command("add")(add_cmd)
