{
  description = "vgpubuild: reproducible builds of patched NVIDIA vGPU drivers for NixOS";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  # Everything is defined in default.nix; the flake only selects systems.
  #   nix build .#vgpubuild
  #   nix run . -- releases list
  #   vgpubuild.lib.mkPatchedDriver { pkgs = ...; release = "17.3"; config = { ... }; }
  #   nixpkgs.overlays = [ vgpubuild.overlays.default ];  # pkgs.vgpubuild, pkgs.vgpubuildLib
  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      project = pkgs: import ./. { inherit pkgs; };
      # Attributes that do not depend on a package set (pkgs is never forced for them).
      common = import ./. { pkgs = null; };
    in
    {
      packages = forAllSystems (pkgs: rec {
        vgpubuild = (project pkgs).vgpubuild;
        default = vgpubuild;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = pkgs.lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.vgpubuild;
        };
      });

      overlays.default = common.overlay;

      lib = {
        inherit (common) catalog;
        mkPatchedDriver = { pkgs, ... }@args: (project pkgs).mkPatchedDriver (builtins.removeAttrs args [ "pkgs" ]);
      };
    };
}
