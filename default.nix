# vgpubuild for Nix: the package, an overlay, and mkPatchedDriver, which builds a patched
# NVIDIA vGPU driver tree as a derivation whose builder is `vgpubuild nix-builder`.
#
#   nix-build -A vgpubuild
#   nix-build -E 'with import ./. { }; mkPatchedDriver { release = "17.3"; config = { patcher.enable = true; }; }'
#
# Usage, the builder's attributes and the migration guide from vgpu4nixos: docs/nix.md.
{ pkgs ? import <nixpkgs> { } }:
let
  pyproject = builtins.fromTOML (builtins.readFile ./pyproject.toml);

  # The catalog vgpubuild itself reads: one source for file names, hashes and patcher revs.
  catalog = (builtins.fromTOML (builtins.readFile ./vgpubuild/releases.toml)).releases;

  package = { lib, python3Packages }:
    python3Packages.buildPythonApplication {
      pname = "vgpubuild";
      inherit (pyproject.project) version;
      pyproject = true;
      # The checkout minus local state (venv, caches, build results) and what the wheel
      # does not need, so editing a test does not rebuild the package.
      src = lib.cleanSourceWith {
        name = "vgpubuild-source";
        src = lib.cleanSource ./.;
        filter = path: _type:
          let top = builtins.head (lib.splitString "/" (lib.removePrefix (toString ./. + "/") (toString path)));
          in !(builtins.elem top [ ".venv" ".mypy_cache" ".pytest_cache" ".ruff_cache" ".hypothesis" ".ci" "bench" "tests" "demo-out" "dist" "build" ]);
      };
      build-system = [ python3Packages.hatchling ];
      dependencies = with python3Packages; [ typer httpx lxml tenacity structlog rich cryptography zstandard ];
      # The test suite compares against Nix, xmlstarlet, makeself and GNU patch and runs in
      # the project's CI; here the package only has to import.
      doCheck = false;
      pythonImportsCheck = [ "vgpubuild" "vgpubuild.cli.app" ];
      meta = {
        inherit (pyproject.project) description;
        license = lib.licenses.mit;
        mainProgram = "vgpubuild";
        platforms = lib.platforms.linux;
      };
    };

  # Programs patch.sh and vgpubuild's stages run inside the build: the derivation has no
  # stdenv, so this list is its whole PATH.
  builderTools = p: with p; [
    bash coreutils findutils gnugrep gnused gawk gnupatch gnutar gzip xz zstd bzip2
    patchelf diffutils which gcc
  ];

  forPkgs = pkgs:
    let
      vgpubuild = pkgs.vgpubuild or (pkgs.callPackage package { });

      # Build the patched driver tree of `release` as configured by `config`, the
      # hardware.nvidia.vgpu option tree (or a vgpubuild build config) as an attribute set.
      mkPatchedDriver =
        { release
        , config ? { }
        , gridZip ? null      # default: requireFile (or driverSource.url) with the catalog's name and hash
        , generalRun ? null   # default: fetchurl from the catalog, for merged targets only
        , patcher ? null      # default: fetchFromGitHub at the catalog's rev, submodules included
        , extraPatches ? [ ]  # patch files applied after the project's own series
        , repack ? false      # also write a single-file .run into the output
        , releases ? { }      # user-defined releases in releases.toml shape, like mkVgpuDriver
        , patcherUnverified ? false
        , vgpubuildPackage ? vgpubuild
        }:
        let
          rel = (catalog // releases).${release} or (throw
            "vgpubuild: release ${release} is not in the catalog; run `vgpubuild releases list`, or pass `releases`");
          target = config.patcher.target or "auto";
          merged = (config.merged or false) || target == "general-merge";
          ds = config.driverSource or { };
          dsUrl = if (ds.url or null) == null then "" else ds.url;
          zipName = if (ds.name or "") != "" then ds.name else rel.zip_name;
          zipHash = if (ds.sha256 or null) != null then ds.sha256 else rel.zip_sha256;
          zip =
            if gridZip != null then gridZip
            else if dsUrl != "" then pkgs.fetchurl {
              url = dsUrl;
              name = zipName;
              hash = zipHash;
              curlOptsList = ds.curlOptsList or [ ];
            }
            else pkgs.requireFile {
              name = zipName;
              hash = zipHash;
              message = ''
                NVIDIA does not allow redistributing ${zipName}.
                Download it from your NVIDIA licensing portal, then add it to the Nix store:
                  nix-store --add-fixed sha256 /path/to/${zipName}
                (vgpubuild add /path/to/${zipName} checks it against the catalog first).
              '';
            };
          patcherSrc =
            if patcher != null then patcher
            else if rel ? patcher then
              let parts = builtins.split "/" rel.patcher.repo;
              in pkgs.fetchFromGitHub {
                owner = builtins.elemAt parts 0;
                repo = builtins.elemAt parts 2;
                inherit (rel.patcher) rev;
                hash = rel.patcher.sha256;
                # The catalog hash covers the tree with the `unlock` submodule filled in
                # and no .git: exactly what fetchSubmodules gives (docs/nix.md).
                fetchSubmodules = true;
              }
            else null;
          general =
            if generalRun != null then generalRun
            else if merged && rel ? patcher then pkgs.fetchurl {
              url = rel.patcher.general_url;
              hash = rel.patcher.general_sha256;
            }
            else null;
          # The zip comes in as a path; driverSource (URL, curl options that may hold
          # credentials) stays out of the derivation.
          buildConfig = builtins.removeAttrs config [ "driverSource" ]
            // (if releases == { } then { } else { releases = (config.releases or { }) // releases; });
        in
        derivation {
          name = "nvidia-vgpu-${rel.host_version}-patched";
          system = pkgs.stdenv.buildPlatform.system;
          builder = pkgs.lib.getExe vgpubuildPackage;
          args = [ "nix-builder" ];
          __structuredAttrs = true;
          # $out is the patched tree; with repack, $run is the single-file .run.
          outputs = [ "out" ] ++ (if repack then [ "run" ] else [ ]);
          inherit release repack patcherUnverified extraPatches;
          gridZip = zip;
          patcher = patcherSrc;
          generalRun = general;
          config = builtins.toJSON buildConfig;
          PATH = pkgs.lib.makeBinPath (builderTools pkgs);
        };
    in
    { inherit vgpubuild mkPatchedDriver; };

  overlay = final: _prev: {
    vgpubuild = final.callPackage package { };
    vgpubuildLib = { inherit catalog; inherit (forPkgs final) mkPatchedDriver; };
  };
in
forPkgs pkgs // { inherit catalog overlay package; }
