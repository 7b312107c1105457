"""The patch.sh contract is learned from the script: each stand-in shape, and shell forms.

The stand-in patchers (vgpubuild.demo, one per contract shape the real branches have) are
read and their contract enforced; the shell forms the real branches use are checked on
small scripts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vgpubuild.demo import SHAPES, DemoInputs, make_demo_inputs
from vgpubuild.errors import PatcherError, UsageError
from vgpubuild.patchercontract import Contract, contract_of, read_contract
from vgpubuild.shellscan import scan

# The built-in lists, as (source, new card) pairs in order (facts of the real branches).
RTX6000, P40, M10, M60 = (
    ("0x1E30", "0x12BA"),
    ("0x1B38", "0x0"),
    ("0x13BD", "0x1160"),
    ("0x13F2", "0x0"),
)
COMMON = [
    (RTX6000, "0x1E07"), (RTX6000, "0x1E84"), (RTX6000, "0x1E81"), (RTX6000, "0x1f03"),
    (RTX6000, "0x1f11"), (RTX6000, "0x2184"), (RTX6000, "0x1f95"), (RTX6000, "0x1EB1"),
    (RTX6000, "0x1ff2"), (P40, "0x1C82"), (P40, "0x1B00"), (P40, "0x1B06"), (P40, "0x1B81"),
    (P40, "0x1D01"),
]  # fmt: skip
LIST_535 = [*COMMON, (M60, "0x17FD"), (M60, "0x13C0"), (M60, "0x13D7"), (M10, "0x139A")]
LIST_550 = [*COMMON, (M10, "0x17FD"), (M10, "0x13C0"), (M10, "0x13D7"), (M10, "0x139A")]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DemoInputs]:
    root = tmp_path_factory.mktemp("shapes")
    return {shape: make_demo_inputs(root / shape, shape=shape) for shape in SHAPES}


def contract(shapes: dict[str, DemoInputs], shape: str) -> Contract:
    return read_contract(shapes[shape].patcher_dir / "patch.sh", f"demo-{shape}")


def pairs(c: Contract, args: list[str]) -> list[tuple[tuple[str, str], str]]:
    return [((s.ids[0], s.ids[1]), s.ids[2]) for s in c.builtin_clones("vgpu-kvm", args)]


def test_535_shape_is_learned(shapes: dict[str, DemoInputs]) -> None:
    c = contract(shapes, "535")
    assert c.clone_disables is None
    assert pairs(c, []) == LIST_535 and len(LIST_535) == 18
    assert pairs(c, ["--remap-p2v"]) == LIST_535
    assert c.remap_option is None
    assert "vgpu-kvm-merge" not in c.targets and c.targets["vgpu-kvm"].pattern == "vgpu*"
    assert [o.pattern for o in c.options if o.pattern.startswith("--nvoss")] == []


def test_550_shape_is_learned(shapes: dict[str, DemoInputs]) -> None:
    c = contract(shapes, "550.90")
    assert c.clone_disables == 0x9999
    assert pairs(c, []) == LIST_550
    assert pairs(c, ["--remap-p2v"]) == [*LIST_550, (P40, "0x1BB3")]
    assert c.remap_option == "--remap-p2v"
    assert c.steps[0].kind == "remap"
    assert c.targets["vgpu-kvm-merge"].output == "${VGPU}-merged-patched"
    assert c.steps[1].comment == "GeForce RTX 2080 Ti <- Quadro RTX 6000"


def test_fork_shape_is_learned(shapes: dict[str, DemoInputs]) -> None:
    c = contract(shapes, "fork")
    assert c.option("--zstd") is not None
    assert c.targets["vgpu-kvm-nolibs"].output == "${VGPU}-nolibs-patched"
    c.check_options(["--zstd", "--repack"])
    assert c.check_target("vgpu-kvm-nolibs").name == "vgpu-kvm-nolibs"


def test_535_refuses_the_merge_target_naming_the_branch(shapes: dict[str, DemoInputs]) -> None:
    c = contract(shapes, "535")
    with pytest.raises(
        UsageError, match=r"branch demo-535 has no target 'vgpu-kvm-merge'.*vgpu\*\)"
    ):
        c.check_target("vgpu-kvm-merge")
    with pytest.raises(UsageError, match=r"branch demo-535 has no --remap-p2v"):
        c.check_remap()
    with pytest.raises(UsageError, match=r"branch demo-535 does not know the option '--nvoss'"):
        c.check_options(["--nvoss"])


def test_550_refuses_fork_options_and_targets(shapes: dict[str, DemoInputs]) -> None:
    c = contract(shapes, "550.90")
    with pytest.raises(UsageError, match=r"branch demo-550\.90 does not know the option '--zstd'"):
        c.check_options(["--zstd"])
    with pytest.raises(UsageError, match="Did you mean '--repack'"):
        c.check_options(["--repak"])
    with pytest.raises(UsageError, match="does not start with '--'"):
        c.check_options(["vgpu-kvm"])
    with pytest.raises(UsageError, match=r"branch demo-550\.90 has no target 'vgpu-kvm-nolibs'"):
        c.check_target("vgpu-kvm-nolibs")
    assert c.check_remap() == "--remap-p2v"
    c.check_clones("vgpu-kvm")
    with pytest.raises(UsageError, match=r"does not edit vgpuConfig\.xml for target 'grid'"):
        c.check_clones("grid")


@pytest.mark.parametrize("shape", SHAPES)
def test_tools_each_step_calls(shapes: dict[str, DemoInputs], shape: str) -> None:
    c = contract(shapes, shape)
    plain = set(c.needed_tools("vgpu-kvm", []))
    assert {"awk", "patch", "sh", "tar", "xz"} <= plain and "gcc" not in plain
    assert set(c.needed_tools("vgpu-kvm", ["--spoof-devid"])) - plain == {"gcc", "which"}
    assert set(c.needed_tools("vgpu-kvm", ["--create-cert"])) - plain == {"makecert", "which"}
    assert "zstd" in c.needed_tools("vgpu-kvm", ["--repack"])
    assert {"gcc", "7z", "msexpand", "osslsigncode", "which"} <= set(c.needed_tools("wsys", []))


def test_the_learned_unknown_option_is_what_patch_sh_ignores(
    shapes: dict[str, DemoInputs], tmp_path: Path
) -> None:
    """The contract says --zstd is unknown to 550.90: its patch.sh only prints that."""
    c = contract(shapes, "550.90")
    assert c.option("--zstd") is None
    proc = subprocess.run(
        ["bash", str(shapes["550.90"].patcher_dir / "patch.sh"), "--zstd", "nosuchtarget"],
        cwd=tmp_path,
        capture_output=True,
        text=True, errors="backslashreplace",
        check=False,
    )
    assert "Unknown option --zstd" in proc.stdout


def test_not_a_patch_sh_is_a_patcher_error(tmp_path: Path) -> None:
    with pytest.raises(PatcherError, match="no argument parser or target case"):
        contract_of("#!/bin/sh\necho hello\n")
    with pytest.raises(PatcherError, match="cannot read"):
        read_contract(tmp_path / "missing.sh")


# ------------------------------------------------------------------- shell forms


SCRIPT = r"""#!/bin/bash
VGPU="NVIDIA-Linux-x86_64-1.2.3-vgpu-kvm"
A=false
B=true
CP="cp -a"
helper() {
    gcc -o x y.c   # a program inside a function
}
while [ $# -gt 0 ] && [ "${1:0:2}" = "--" ]; do
    case "$1" in
        --a) A=true ;;
        --b-off|--no-b)
            B=false
            ;;
        --level=*) LEVEL="${1#*=}" ;;
        *) echo "Unknown option $1" ;;
    esac
    shift
done
case "$1" in
    one)
        SOURCE="${VGPU}"
        ;;
    two)
        MRGD="${VGPU}-two"
        SOURCE="${MRGD}"
        TARGET="${MRGD}-done"
        ;;
    vcfg)
        exit 0
        ;;
esac
[ -n "${TARGET}" ] || TARGET="${SOURCE}-patched"
$A || $B && {
    either-one
}
if $A; then
    only-a
else
    not-a
fi
$A && if [ -e x ]; then
    a-and-maybe
else
    a-and-maybe-not
fi
$B || not-b "$(inner-b)"
$A && helper
$CP x y
echo "it's \"quoted\" # not a comment" ; after-quote # a comment
"""


def test_conditions_forms() -> None:
    script = scan(SCRIPT)
    when = {c.words[0]: c.when for c in script.commands}
    assert when["either-one"].flags == frozenset()  # (A || B) && ...: maybe
    assert when["only-a"].flags == {("A", True)}
    assert when["not-a"].flags == {("A", False)}
    assert when["a-and-maybe"].flags == when["a-and-maybe-not"].flags == {("A", True)}
    assert when["not-b"].flags == when["inner-b"].flags == {("B", False)}
    assert when["gcc"].function == "helper"
    assert when["after-quote"].flags == frozenset()
    assert [c.comment for c in script.commands if c.words[0] == "after-quote"] == ["a comment"]


def test_contract_of_small_script() -> None:
    c = contract_of(SCRIPT, "small")
    assert {n: t.output for n, t in c.targets.items()} == {
        "one": "${VGPU}-patched",
        "two": "${VGPU}-two-done",
    }
    assert c.option("--no-b") is not None and c.option("--level=3") is not None
    assert c.option("--level") is None
    assert c.flags("one", ["--a", "--no-b"]) == {"A": True, "B": False}
    tools = set(c.needed_tools("one", []))
    assert "cp" in tools and "gcc" not in tools  # $CP is cp; helper only runs with --a
    assert "gcc" in c.needed_tools("one", ["--a"])
    assert {"either-one", "not-a"} <= tools  # a condition it cannot read counts as "maybe"
    assert not {"only-a", "a-and-maybe", "not-b"} & tools
    assert "not-b" in c.needed_tools("one", ["--no-b"])
