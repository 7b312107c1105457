"""Build configuration: the NixOS module's option names, from TOML, JSON and Nix itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from vgpubuild.config import BuildConfig, load_overrides_file
from vgpubuild.errors import ConfigError

FULL_TOML = """
release = "17.3"
guest = false
merged = true
zip = "inputs/grid.zip"
patches = ["local/fix.patch"]

[patcher]
enable = true
target = "auto"
[patcher.options]
doNotForceGPLLicense = true
remapP40ProfilesToV100D = true
extra = ["--no-klogtrace"]
[patcher.copyVGPUProfiles]
"1E07:0000" = "1E30:12BA"
[patcher.profileOverrides."333"]
vramAllocation = 3584
heads = 1
display = { width = 1920, height = 1080 }
framerateLimit = 144
xmlConfig = { eccSupported = "1", license = "NVS" }
[driverSource]
name = "NVIDIA-GRID-Linux-KVM-550.90.05-550.90.07-552.74.zip"
url = "https://files.example/grid.zip"
sha256 = ""
curlOptsList = ["-u", "admin:secret"]
[releases."17.3-mine"]
host_version = "550.90.05"
"""

# What `builtins.toJSON config.hardware.nvidia.vgpu` gives on a host with vgpu4nixos:
# every option present, unset ones null, runtime-only options included.
MODULE_DUMP_NIX = """{
  patcher = {
    enable = true;
    enablePatcherCmd = false;
    options = { doNotForceGPLLicense = false; extra = [ "--test-dmabuf-export" ];
                remapP40ProfilesToV100D = false; };
    copyVGPUProfiles = { "1E07:0000" = "1E30:12BA"; };
    profileOverrides = {
      "333" = { vramAllocation = 3584; heads = null; enableCuda = true;
                display = { width = 1920; height = 1080; }; framerateLimit = null;
                xmlConfig = { }; };
      "334" = { vramAllocation = null; heads = null; enableCuda = null;
                display = { width = null; height = null; }; framerateLimit = null;
                xmlConfig = { }; };
    };
    runtimeOptions = { enable = false; vgpukvm = true; kmalimit = 8192; };
  };
  driverSource = { name = ""; url = null; sha256 = null; curlOptsList = [ ]; };
}"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_with_every_module_option(tmp_path: Path) -> None:
    cfg = BuildConfig.load(_write(tmp_path, "build.toml", FULL_TOML))
    assert cfg.release == "17.3" and cfg.merged and not cfg.guest and cfg.enable
    assert cfg.options.doNotForceGPLLicense and cfg.options.remapP40ProfilesToV100D
    assert cfg.options.extra == ("--no-klogtrace",)
    assert cfg.copyVGPUProfiles == {"1E07:0000": "1E30:12BA"}
    assert cfg.profileOverrides == {
        "333": {
            "vramAllocation": 3584,
            "heads": 1,
            "display": {"width": 1920, "height": 1080},
            "framerateLimit": 144,
            "xmlConfig": {"eccSupported": "1", "license": "NVS"},
        }
    }
    assert cfg.driverSource.curlOptsList == ("-u", "admin:secret")
    assert cfg.driverSource.sha256 == ""
    # Relative paths are the file's folder's, not the working directory's.
    assert cfg.zip == str(tmp_path / "inputs/grid.zip")
    assert cfg.patches == (tmp_path / "local/fix.patch",)
    assert cfg.releases == {"17.3-mine": {"host_version": "550.90.05"}}


def test_nix_tojson_dump_of_the_module_loads(tmp_path: Path) -> None:
    nix = require_tool("nix-instantiate")
    out = subprocess.run(
        [nix, "--eval", "--strict", "--json", "-E", MODULE_DUMP_NIX],
        capture_output=True,
        check=True,
    ).stdout
    cfg = BuildConfig.load(_write(tmp_path, "vgpu.json", out.decode(errors="backslashreplace")))
    assert cfg.options.extra == ("--test-dmabuf-export",)
    # Nulls are "not set": profile 334 sets nothing, 333 only what is given.
    assert cfg.profileOverrides == {
        "333": {
            "vramAllocation": 3584,
            "enableCuda": True,
            "display": {"width": 1920, "height": 1080},
        }
    }
    assert cfg.driverSource.url == "" and cfg.driverSource.sha256 is None
    assert cfg.copyVGPUProfiles == {"1E07:0000": "1E30:12BA"}


@pytest.mark.parametrize(
    ("text", "bad", "suggestion"),
    [
        ("relase = '17.3'", "relase", "release"),
        (
            "[patcher.options]\ndoNotForceGPLLicence = true",
            "patcher.options.doNotForceGPLLicence",
            "patcher.options.doNotForceGPLLicense",
        ),
        (
            "[patcher]\ncopyVgpuProfiles = {}",
            "patcher.copyVgpuProfiles",
            "patcher.copyVGPUProfiles",
        ),
        (
            "[patcher.profileOverrides.'333']\nvram = 1024",
            "patcher.profileOverrides.333.vram",
            "patcher.profileOverrides.333.vramAllocation",
        ),
        ("[driverSource]\ncurlOpts = []", "driverSource.curlOpts", "driverSource.curlOptsList"),
    ],
)
def test_unknown_key_names_the_closest(
    tmp_path: Path, text: str, bad: str, suggestion: str
) -> None:
    with pytest.raises(ConfigError) as err:
        BuildConfig.load(_write(tmp_path, "build.toml", text))
    assert repr(bad) in err.value.message
    assert err.value.hint is not None and repr(suggestion) in err.value.hint


def test_unknown_key_without_a_close_one_lists_the_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        BuildConfig.load(_write(tmp_path, "b.json", '{"driverSource": {"zzzzzz": 1}}'))
    assert "'driverSource.zzzzzz'" in err.value.message
    assert err.value.hint == "Valid keys here: curlOptsList, name, sha256, url."


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"patcher": {"enable": "yes"}}', "patcher.enable"),
        ('{"patcher": {"options": {"extra": "--x"}}}', "patcher.options.extra"),
        (
            '{"patcher": {"profileOverrides": {"333": {"heads": true}}}}',
            "patcher.profileOverrides.333.heads",
        ),
        ('{"patcher": {"profileOverrides": {"nvidia-333": {}}}}', "patcher.profileOverrides"),
        ('{"patcher": {"copyVGPUProfiles": {"1E07": "1E30:12BA"}}}', "patcher.copyVGPUProfiles"),
        ('{"patcher": {"target": "vgpu_kvm"}}', "patcher.target"),
        ('{"release": 17.3}', "release"),
        ('["release"]', "must hold a table"),
    ],
)
def test_bad_values_are_config_errors(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        BuildConfig.load(_write(tmp_path, "b.json", text))
    assert where in err.value.message


def test_unknown_target_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        BuildConfig.load(_write(tmp_path, "b.toml", "[patcher]\ntarget = 'vgpu_kvm'"))
    assert err.value.hint == "Did you mean 'vgpu-kvm'?"


def test_syntax_errors_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        BuildConfig.load(_write(tmp_path, "b.toml", "release = "))
    with pytest.raises(ConfigError, match="not valid JSON"):
        BuildConfig.load(_write(tmp_path, "b.json", '{"release": }'))
    with pytest.raises(ConfigError, match="does not exist"):
        BuildConfig.load(tmp_path / "nope.toml")


def test_gridd_unlock_is_accepted_off_and_refused_on(tmp_path: Path) -> None:
    off = '{"griddUnlock": {"enable": false, "rootCaFile": null}}'
    assert BuildConfig.load(_write(tmp_path, "a.json", off)).release is None
    with pytest.raises(ConfigError, match="gridd-unlock-patcher"):
        BuildConfig.load(_write(tmp_path, "b.json", '{"griddUnlock": {"enable": true}}'))


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    cfg = BuildConfig.load(_write(tmp_path, "build.toml", FULL_TOML))
    cli = {
        "release": "16.5",
        "guest": True,
        "patcher": {
            "target": "grid",
            "options": {
                "doNotForceGPLLicense": False,
                "extra": ["--no-klogtrace", "--spoof-devid"],
            },
            "copyVGPUProfiles": {"1B81:0000": "1B38:0"},
            "profileOverrides": {"333": {"heads": 2}, "334": {"vramAllocation": 2048}},
        },
        "zip": "other.zip",
    }
    merged = cfg.merged_with(cli, base_dir=tmp_path / "cwd")
    assert merged.release == "16.5" and merged.guest and merged.target == "grid"
    assert merged.merged  # not given on the command line: the file's value stays
    assert not merged.options.doNotForceGPLLicense
    assert merged.options.remapP40ProfilesToV100D
    assert merged.options.extra == ("--no-klogtrace", "--spoof-devid")
    assert merged.copyVGPUProfiles == {"1E07:0000": "1E30:12BA", "1B81:0000": "1B38:0"}
    assert merged.profileOverrides["333"]["heads"] == 2
    assert merged.profileOverrides["333"]["vramAllocation"] == 3584
    assert merged.profileOverrides["334"] == {"vramAllocation": 2048}
    assert merged.zip == str(tmp_path / "cwd/other.zip")
    assert merged.source.endswith("build.toml + command line")
    # The original is untouched (frozen, copied).
    assert cfg.release == "17.3" and "334" not in cfg.profileOverrides


def test_command_line_values_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"'patcher\.options\.extraa' in command line"):
        BuildConfig().merged_with({"patcher": {"options": {"extraa": []}}})


def test_urls_stay_urls(tmp_path: Path) -> None:
    cfg = BuildConfig().merged_with({"zip": "https://h.example/g.zip"}, base_dir=tmp_path)
    assert cfg.zip == "https://h.example/g.zip"


def test_overrides_file_shapes(tmp_path: Path) -> None:
    ids = _write(tmp_path, "o.toml", '["333"]\nvramAllocation = 2048\n')
    assert load_overrides_file(ids) == {
        "patcher": {"profileOverrides": {"333": {"vramAllocation": 2048}}}
    }
    full = _write(
        tmp_path,
        "p.toml",
        '[patcher.copyVGPUProfiles]\n"1E07:0000" = "1E30:12BA"\n'
        '[patcher.profileOverrides."333"]\nheads = 1\n',
    )
    cfg = BuildConfig().merged_with(load_overrides_file(full))
    assert cfg.copyVGPUProfiles == {"1E07:0000": "1E30:12BA"}
    assert cfg.profileOverrides == {"333": {"heads": 1}}
    other = _write(
        tmp_path, "x.toml", 'release = "17.3"\n[patcher.profileOverrides."333"]\nheads = 1\n'
    )
    with pytest.raises(ConfigError, match="holds 'release'"):
        load_overrides_file(other)
    bad_id = _write(tmp_path, "y.toml", '["abc"]\nheads = 1\n')
    with pytest.raises(ConfigError, match="not a vgpuType id"):
        BuildConfig().merged_with(load_overrides_file(bad_id))
