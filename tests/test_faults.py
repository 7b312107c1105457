"""Builds that survive signals, crashes, concurrent runs, full disks and hostile inputs.

Every case drives the real CLI in a real process and checks the same four things: one
``error:`` line with the exit code of its failure class (never "internal error"), nothing
of the run left in ``--out`` or the work area, no child process left running, and a next
run that succeeds. The full-disk cases mount a small tmpfs (root only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, Result, run_cli
from httpserver import (
    LAST_MODIFIED,
    FaultServer,
    busy_until,
    drop,
    make_tls,
    misrange,
    status,
)
from test_pipeline import HOST_TREE, write_config

from vgpubuild.demo import DemoInputs
from vgpubuild.nar import nar_hash
from vgpubuild.nixhash import Hash

pytestmark = pytest.mark.usefixtures("no_user_netrc")

BODY = os.urandom(300_001)
SHA = Hash("sha256", hashlib.sha256(BODY).digest())


# ------------------------------------------------------------------------------- helpers


def one_error(r: Result, code: int) -> str:
    """The run failed with ``code`` and said so in exactly one ``error:`` line."""
    assert r.exit_code == code, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    assert "internal error" not in lines[0] and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def build_cmd(
    demo: DemoInputs, tmp: Path, out: Path, *args: str, patcher: Path | None = None
) -> list[str]:
    config = write_config(demo, tmp / "build.json")
    return [sys.executable, "-m", "vgpubuild", "patch", "--config", str(config),
            "--patcher", str(patcher or demo.patcher_dir), "--out", str(out), "--json",
            *args]  # fmt: skip


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    scratch = tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "VGPUBUILD_CACHE": str(tmp / "cache"), "TMPDIR": str(scratch), **extra}


def run(cmd: list[str], env: dict[str, str]) -> Result:
    proc = subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=300)
    return Result(proc.returncode, proc.stdout.decode(errors="backslashreplace"), proc.stderr.decode(errors="backslashreplace"), proc.stdout)


def built(r: Result) -> dict[str, str]:
    assert r.exit_code == 0, r.stderr
    data: dict[str, str] = json.loads(r.stdout)
    return data


def nothing_left(tmp: Path, out: Path, expected: list[str]) -> None:
    """``out`` holds exactly ``expected``; the scratch and cache tmp folders are empty."""
    assert sorted(os.listdir(out)) == sorted(expected)
    assert os.listdir(tmp / "scratch") == []
    cache_tmp = tmp / "cache" / "tmp"
    assert not cache_tmp.exists() or os.listdir(cache_tmp) == []


def sleeping_patcher(demo: DemoInputs, tmp: Path) -> tuple[Path, Path]:
    """A copy of the demo patcher whose patch.sh starts a child and waits; and its pid file."""
    patcher = tmp / "patcher"
    subprocess.run(["cp", "-a", str(demo.patcher_dir), str(patcher)], check=True)
    script = patcher / "patch.sh"
    marker = tmp / "patch-started"
    script.write_text(
        script.read_text().replace(
            '$DO_VGPU && extract "${VGPU}.run"',
            f'$DO_VGPU && extract "${{VGPU}}.run"\nsleep 60 &\necho "$$ $!" > {marker}\nwait',
        )
    )
    return patcher, marker


def wait_for(marker: Path, proc: subprocess.Popen[bytes]) -> list[int]:
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text().endswith("\n"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "patch.sh never started"
        time.sleep(0.05)
    return [int(pid) for pid in marker.read_text().split()]


def ends_within(pid: int, seconds: float) -> bool:
    """Whether PID has ended by the deadline: gone, or a zombie its new parent has yet to reap.

    An orphan killed with its process group is reaped by init a moment later; until then
    /proc still lists it, in state Z, although it runs no more.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [
        (signal.SIGINT, 130, "Ctrl-C"),
        (signal.SIGTERM, 143, "SIGTERM"),
        (signal.SIGHUP, 129, "SIGHUP"),
    ],
)
def test_signal_during_patch_sh_cleans_up_and_stops_its_children(
    demo: DemoInputs, tmp_path: Path, sig: signal.Signals, code: int, word: str
) -> None:
    patcher, marker = sleeping_patcher(demo, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    env = env_for(tmp_path)
    cmd = build_cmd(demo, tmp_path, out, "--patcher-unverified", patcher=patcher)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children = wait_for(marker, proc)
    assert any(out.iterdir())  # the build was under way inside --out
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    line = one_error(Result(proc.returncode, stdout.decode(errors="backslashreplace"), stderr.decode(errors="backslashreplace"), stdout), code)
    assert f"interrupted ({word})" in line
    nothing_left(tmp_path, out, [])
    for pid in children:  # patch.sh and its sleep, by their own pids
        assert ends_within(pid, seconds=10), f"process {pid} outlived the build"
    built(run(build_cmd(demo, tmp_path, out), env))  # the next run succeeds


# ------------------------------------------------------------------------ hostile inputs


@pytest.mark.parametrize(
    ("syntax", "levels"), [("json", 100_000), ("toml", 100_000), ("json", 900)]
)
def test_100k_deep_document_is_a_config_error(tmp_path: Path, syntax: str, levels: int) -> None:
    """Too deep for the parser, or parsed but too deep for every recursive step after it."""
    deep = "[" * levels + "]" * levels
    doc = tmp_path / f"deep.{syntax}"
    doc.write_text(
        f'{{"patcher": {{"profileOverrides": {deep}}}}}' if syntax == "json" else f"a = {deep}\n"
    )
    xml = tmp_path / "vgpuConfig.xml"
    xml.write_text("<vgpuconfig/>")
    line = one_error(run_cli("profiles", "apply", str(doc), "--xml", str(xml), "--dry-run"), 3)
    assert "nests tables or lists more than 32 levels deep" in line
    line = one_error(run_cli("patch", "--config", str(doc), "--out", str(tmp_path / "o")), 3)
    assert "levels deep" in line and not (tmp_path / "o").exists()


@pytest.fixture
def vgpu_xml(demo: DemoInputs, tmp_path: Path) -> Path:
    """The demo driver's vgpuConfig.xml, as a user would hand it to ``profiles``."""
    xml = tmp_path / "vgpuConfig.xml"
    subprocess.run(["sh", str(demo.host_run), "-x", "--target", str(tmp_path / "drv")],
                   check=True, capture_output=True)  # fmt: skip
    xml.write_bytes((tmp_path / "drv" / "vgpuConfig.xml").read_bytes())
    return xml


def test_control_characters_in_xml_values_are_refused(
    demo: DemoInputs, tmp_path: Path, vgpu_xml: Path
) -> None:
    before = vgpu_xml.read_bytes()
    r = run_cli("profiles", "override", "333", "--xml", str(vgpu_xml), "--set", "license=a\x01b",
                "--in-place")  # fmt: skip
    assert "U+0001, which XML cannot hold" in one_error(r, 2)
    doc = tmp_path / "o.json"
    doc.write_text(
        json.dumps(
            {"patcher": {"profileOverrides": {"333": {"xmlConfig": {"license": {"x": "a\x1bb"}}}}}}
        )
    )
    r = run_cli("profiles", "apply", str(doc), "--xml", str(vgpu_xml), "--in-place")
    assert "xmlConfig.license.x" in one_error(r, 3)
    assert vgpu_xml.read_bytes() == before
    out = tmp_path / "out"
    line = one_error(
        run(build_cmd(demo, tmp_path, out, "--overrides", str(doc)), env_for(tmp_path)), 3
    )
    assert "U+001B" in line and not out.exists()


def test_duplicate_profile_id_is_refused_not_half_edited(vgpu_xml: Path) -> None:
    text = vgpu_xml.read_text()
    start = text.index('<vgpuType id="333"')
    end = text.index("</vgpuType>", start) + len("</vgpuType>")
    vgpu_xml.write_text(text[:end] + "\n    " + text[start:end] + text[end:])
    before = vgpu_xml.read_bytes()
    for args in (["override", "333", "--vram", "2048", "--in-place"], ["show", "333"]):
        r = run_cli("profiles", *args, "--xml", str(vgpu_xml))
        assert "has 2 profiles (vgpuType) with id 333" in one_error(r, 8)
    assert vgpu_xml.read_bytes() == before
    r = run_cli(
        "profiles", "override", "334", "--vram", "2048", "--xml", str(vgpu_xml), "--dry-run"
    )
    assert r.exit_code == 0, r.stderr  # other profiles are still editable


# ------------------------------------------------------------------------------ redaction


def test_redaction_keeps_hashes_and_user_names_whole(server: FaultServer, tmp_path: Path) -> None:
    """A password that occurs inside a hash, or a user name in a path, is not a secret there."""
    wrong = b"not the file"
    got = Hash("sha256", hashlib.sha256(wrong).digest())
    # A password that occurs inside the hash of what the server sends.
    password = next(w for i in range(7, 40) if (w := got.sri[i : i + 8]).isalnum())
    user = "alice"
    cache = tmp_path / user / "cache"
    url = server.add("/f.zip", wrong).replace("http://", f"http://{user}:{password}@")
    r = run_cli("-v", "prefetch", url, SHA.sri, "--retry-wait", "0",
                env={"VGPUBUILD_CACHE": str(cache)})  # fmt: skip
    line = one_error(r, 6)
    assert f"  got:       {got.sri}" in r.stderr and "***" not in line
    assert f"{cache}/quarantine/" in line  # the user name in the path is left alone
    assert server.requests("/f.zip")[0].headers["authorization"]  # credentials were used
    # The password standing as a token is still hidden, wherever it appears.
    bad = server.add("/g.zip", default=status(404))
    r = run_cli("prefetch", bad, "--curl-opts", f"-H 'X-Token: {password}'",
                env={"VGPUBUILD_CACHE": str(cache)})  # fmt: skip
    assert password not in r.stderr.replace(got.sri, "")


def test_log_events_are_redacted_in_the_structlog_chain(capsys: pytest.CaptureFixture[str]) -> None:
    from vgpubuild import log

    log.configure("json", log.INFO)
    log.add_secret("tkn-5ecret-42")
    log.get_logger(stage="test").warning("token tkn-5ecret-42 seen", header="Bearer tkn-5ecret-42")
    err = capsys.readouterr().err
    assert "tkn-5ecret-42" not in err
    event = json.loads(err.splitlines()[-1])
    assert event["event"] == "token *** seen" and event["header"] == "Bearer ***"


# -------------------------------------------------------------------------------- fetch


def prefetch(url: str, tmp: Path, *args: str) -> Result:
    return run_cli("prefetch", url, SHA.sri, "--print-path", "--retry-wait", "0", *args,
                   env={"VGPUBUILD_CACHE": str(tmp / "cache")})  # fmt: skip


def test_206_from_the_wrong_offset_is_not_appended(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/f.zip", BODY, script=[drop(100_000), misrange(0)])
    r = prefetch(url, tmp_path)
    assert r.exit_code == 0, r.stderr
    assert Path(r.stdout.splitlines()[1]).read_bytes() == BODY
    statuses = [(q.status, q.headers.get("range")) for q in server.requests("/f.zip")]
    assert statuses[1] == (206, "bytes=100000-") and statuses[2] == (200, None)


def test_retry_after_as_an_http_date_is_honoured(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/f.zip", BODY, script=[busy_until(3)])
    assert prefetch(url, tmp_path).exit_code == 0
    first, second = server.requests("/f.zip")[:2]
    assert second.at - first.at >= 1.5  # the date's 2-3 s (whole seconds), not the 0 s backoff


def test_weak_etag_is_never_sent_in_if_range(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/f.zip", BODY, script=[drop(100_000)], etag='W/"weak-1"')
    assert prefetch(url, tmp_path).exit_code == 0
    _first, second = server.requests("/f.zip")
    assert second.headers["if-range"] == LAST_MODIFIED  # the date, not the weak tag
    assert second.status == 206 and second.served == (100_000, len(BODY))


def test_tls_certificate_is_verified_unless_its_ca_is_given(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    with FaultServer(tls=tls) as server:
        url = server.add("/f.zip", BODY)
        r = prefetch(url, tmp_path, "--json")
        line = one_error(r, 5)
        assert "TLS certificate" in line and "could not be verified" in line and "--cacert" in line
        assert "retrying" not in r.stderr  # a certificate is not fixed by trying again
        assert not server.requests("/f.zip")  # nothing was asked over the unverified link
        for i, trust in enumerate((["--curl-opts", f"--cacert {tls.ca}"], ["-k"])):
            ok = prefetch(url, tmp_path / f"trusting{i}", *trust)
            assert ok.exit_code == 0, ok.stderr
            assert Path(ok.stdout.splitlines()[1]).read_bytes() == BODY


def test_a_link_that_drops_every_50_kb_still_finishes(server: FaultServer, tmp_path: Path) -> None:
    """Each attempt brings new bytes, so neither the attempt budget nor the backoff runs out."""
    url = server.add("/f.zip", BODY, script=[drop(50_000)] * 7)
    r = run_cli("--log-format", "json", "prefetch", url, SHA.sri, "--attempts", "2",
                "--retry-wait", "0.05", env={"VGPUBUILD_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert len(server.requests("/f.zip")) == 7  # six cut short, then the rest
    waits = [json.loads(line)["wait_s"] for line in r.stderr.splitlines() if "wait_s" in line]
    assert len(waits) == 6 and max(waits) <= 0.1  # the first backoff each time, no doubling


@pytest.mark.parametrize(("script", "said"), [
    ([status(503)] * 2, "nothing was received"),
    ([drop(120_000), status(503), status(503)], "the 120000 bytes received are kept"),
])  # fmt: skip
def test_give_up_message_says_what_is_kept(
    server: FaultServer, tmp_path: Path, script: list[Any], said: str
) -> None:
    url = server.add("/f.zip", BODY, script=script)
    line = one_error(prefetch(url, tmp_path, "--attempts", "2"), 5)
    assert said in line and "partial file is kept" not in line
    if said.startswith("the"):
        assert prefetch(url, tmp_path).exit_code == 0
        assert server.requests("/f.zip")[-1].served == (120_000, len(BODY))


def test_hash_mismatch_of_your_own_file_says_it_stays_put(tmp_path: Path) -> None:
    mine = tmp_path / "NVIDIA-Linux-x86_64-550.999.05-vgpu-kvm.run"
    mine.write_bytes(b"not the driver")
    r = run_cli("add", str(mine), "--sha256", SHA.sri, env={"VGPUBUILD_CACHE": str(tmp_path / "c")})
    line = one_error(r, 6)
    assert (
        f"{mine} was left as it is, the copy read from it is in {tmp_path / 'c'}/quarantine/"
        in line
    )
    assert "moved" not in line and mine.read_bytes() == b"not the driver"


def test_an_unparsable_url_is_a_usage_error(tmp_path: Path) -> None:
    line = one_error(prefetch("http://alice:pa/ss@127.0.0.1:1/f.zip", tmp_path), 2)
    assert "is not valid" in line and "pa/ss" not in line


# ------------------------------------------------------------------------ atomic writes


def test_atomic_file_never_shows_half_a_file(tmp_path: Path) -> None:
    from vgpubuild.atomic import atomic_file

    dest = tmp_path / "f"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(dest) as f:
        f.write(b"new and half")
        f.flush()
        assert dest.read_bytes() == b"old"  # nobody sees the new bytes before the end
        raise RuntimeError
    assert dest.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


def test_atomic_dir_cleans_up_and_replaces_whole(tmp_path: Path) -> None:
    from vgpubuild.atomic import atomic_dir

    dest = tmp_path / "tree"
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError
    assert os.listdir(tmp_path) == []
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("one")
    (tmp_path / ".tree.old").mkdir()  # a leftover of a dead run blocks nothing
    (tmp_path / ".tree.old" / "x").write_text("")
    with atomic_dir(dest, replace=True) as tmp:
        (tmp / "b").write_text("two")
    assert os.listdir(dest) == ["b"]
    assert sorted(os.listdir(tmp_path)) == [".tree.old", "tree"]


# ---------------------------------------------------------------------------- full disk


class Tmpfs:
    """Small tmpfs mounts for one test (needs root); unmounted when the test ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: list[Path] = []

    def mount(self, size: str) -> Path:
        path = self.root / f"disk{len(self.mounts)}"
        path.mkdir(parents=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            reason = proc.stderr.decode(errors="backslashreplace").strip()
            message = f"cannot mount a tmpfs ({reason}); the full-disk tests need root"
            if IN_CI and os.geteuid() == 0:
                pytest.fail(message)
            pytest.skip(message)
        self.mounts.append(path)
        return path

    def grow(self, path: Path, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    disks = Tmpfs(tmp_path / "mounts")
    try:
        yield disks
    finally:
        for path in disks.mounts:
            subprocess.run(["umount", "-l", str(path)], check=False)


def test_add_into_a_full_cache(tmpfs: Tmpfs, tmp_path: Path) -> None:
    big = tmp_path / "big.run"
    big.write_bytes(os.urandom(1 << 20))
    sha = Hash("sha256", hashlib.sha256(big.read_bytes()).digest())
    cache = tmpfs.mount("256k") / "cache"
    r = run_cli("add", str(big), "--sha256", sha.sri, env={"VGPUBUILD_CACHE": str(cache)})
    line = one_error(r, 11)
    assert "no space left on the disk of" in line and str(cache) in line
    assert "it needs 1.0 MiB" in line
    assert os.listdir(cache / "tmp") == []
    r = run_cli("add", str(big), "--sha256", sha.sri,
                env={"VGPUBUILD_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert r.exit_code == 0, r.stderr


# ------------------------------------------------------------ crashes and concurrent runs


def overrides(tmp: Path, vram: int) -> Path:
    path = tmp / f"o{vram}.toml"
    path.write_text(f'["333"]\nvramAllocation = {vram}\n')
    return path


def test_sigkill_leftovers_are_removed_by_the_next_run(demo: DemoInputs, tmp_path: Path) -> None:
    patcher, marker = sleeping_patcher(demo, tmp_path)
    out = tmp_path / "out"
    env = env_for(tmp_path)
    cmd = build_cmd(demo, tmp_path, out, "--patcher-unverified", patcher=patcher)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children = wait_for(marker, proc)
    proc.kill()
    proc.communicate(timeout=30)
    (stale,) = out.glob(".vgpubuild-work.*")  # what a crash leaves; its patch.sh runs on
    assert not any(ends_within(pid, seconds=0.5) for pid in children)
    data = built(run(build_cmd(demo, tmp_path, out), env))
    assert Path(data["artifact"]).name == HOST_TREE
    assert not stale.exists()
    for pid in children:
        assert ends_within(pid, seconds=10), f"orphan {pid} of the dead run still runs"
    nothing_left(tmp_path, out, [HOST_TREE])


def test_old_folder_left_by_a_dead_run_blocks_nothing(demo: DemoInputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = env_for(tmp_path)
    built(run(build_cmd(demo, tmp_path, out), env))
    (out / f".{HOST_TREE}.old" / "x").mkdir(parents=True)
    (out / f".{HOST_TREE}.abcd1234.tmp").mkdir()
    data = built(
        run(build_cmd(demo, tmp_path, out, "--overrides", str(overrides(tmp_path, 2048))), env)
    )
    assert json.loads((Path(data["artifact"]) / "vgpubuild-manifest.json").read_text())[
        "profileOverrides"
    ] == {"333": {"vramAllocation": 2048}}
    nothing_left(tmp_path, out, [HOST_TREE])


def test_four_builds_into_one_out_ten_rounds(demo: DemoInputs, tmp_path: Path) -> None:
    """Each round builds a new artifact four times at once into the same --out and cache."""
    out = tmp_path / "out"
    env = env_for(tmp_path)
    for round_ in range(10):
        cmd = build_cmd(demo, tmp_path, out, "--overrides", str(overrides(tmp_path, 1024 + round_)))
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(4)]  # fmt: skip
        results = [p.communicate(timeout=300) for p in procs]
        failed = [
            (p.returncode, e.decode())
            for p, (_, e) in zip(procs, results, strict=True)
            if p.returncode
        ]
        assert not failed, (round_, failed)
        hashes = {json.loads(o)["nar_hash"] for o, _ in results}
        assert len(hashes) == 1, round_
        nothing_left(tmp_path, out, [HOST_TREE])
        assert nar_hash(out / HOST_TREE).sri in hashes


def test_two_different_builds_into_one_out_both_succeed(demo: DemoInputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = env_for(tmp_path)
    cmds = [
        build_cmd(demo, tmp_path, out, "--overrides", str(overrides(tmp_path, v)))
        for v in (1536, 2560)
    ]
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in cmds * 2
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e.decode() for _, e in results]
    assert nar_hash(out / HOST_TREE).sri in {json.loads(o)["nar_hash"] for o, _ in results}
    nothing_left(tmp_path, out, [HOST_TREE])


def disk_full(r: Result, folder: Path) -> str:
    line = one_error(r, 11)
    assert f"error: no space left on the disk of {str(folder)!r}: it needs" in line, line
    return line


@pytest.mark.parametrize("size", ["16k", "64k", "160k"])
def test_out_on_a_full_disk(demo: DemoInputs, tmp_path: Path, tmpfs: Tmpfs, size: str) -> None:
    """Too small for the patcher's copy, for patch.sh's tree, or for patch(1)'s edits."""
    disk = tmpfs.mount(size)
    out = disk / "out"
    env = env_for(tmp_path)
    disk_full(run(build_cmd(demo, tmp_path, out), env), out)
    assert not out.exists() and os.listdir(disk) == []
    tmpfs.grow(disk, "2m")
    built(run(build_cmd(demo, tmp_path, out), env))
    nothing_left(tmp_path, out, [HOST_TREE])


def test_cached_artifact_copied_onto_a_full_disk(
    demo: DemoInputs, tmp_path: Path, tmpfs: Tmpfs
) -> None:
    env = env_for(tmp_path)
    first = built(run(build_cmd(demo, tmp_path, tmp_path / "first"), env))
    disk = tmpfs.mount("64k")
    out = disk / "out"
    out.mkdir()
    line = disk_full(run(build_cmd(demo, tmp_path, out), env), out)
    assert "Error: [" not in line and len(line) < 300  # not shutil's list of every file
    nothing_left(tmp_path, out, [])
    tmpfs.grow(disk, "1m")
    again = built(run(build_cmd(demo, tmp_path, out), env))
    assert again["nar_hash"] == first["nar_hash"]


def test_zip_member_inflating_past_the_free_space(
    demo: DemoInputs, tmp_path: Path, tmpfs: Tmpfs
) -> None:
    """Not "damaged, download again": the zip is fine, the disk is full."""
    big_zip = tmp_path / "zip" / demo.zip_path.name
    big_zip.parent.mkdir()
    with zipfile.ZipFile(demo.zip_path) as src, zipfile.ZipFile(big_zip, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("Host_Drivers/") and info.filename.endswith(".run"):
                data += bytes(4 << 20)  # 4 MiB of zeros, a few KiB once deflated
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    big = dataclasses.replace(demo, zip_path=big_zip)
    disk = tmpfs.mount("1m")
    out = disk / "out"
    line = disk_full(run(build_cmd(big, tmp_path, out), env_for(tmp_path)), out)
    assert "it needs 4.0 MiB" in line and "damaged" not in line
    assert not out.exists()


# ------------------------------------------------------------------ a key that cannot go stale


def test_each_changed_input_rebuilds_instead_of_reusing(demo: DemoInputs, tmp_path: Path) -> None:
    """The end-to-end side of tests/test_plan.py: a changed setting is never served stale."""
    out = tmp_path / "out"
    env = env_for(tmp_path)
    fix = tmp_path / "notes.patch"
    fix.write_text("--- /dev/null\n+++ b/NOTES.txt\n@@ -0,0 +1 @@\n+one\n")
    base = ["--overrides", str(overrides(tmp_path, 3584))]

    def artifact_of(*args: str) -> tuple[dict[str, Any], dict[str, Any]]:
        data: dict[str, Any] = built(run(build_cmd(demo, tmp_path, out, *args), env))
        m = json.loads((Path(data["artifact"]) / "vgpubuild-manifest.json").read_text())
        assert nar_hash(Path(data["artifact"])).sri == data["nar_hash"]
        return data, m

    first, _ = artifact_of(*base)
    keys = {first["build_key"]}
    changes = {
        "vramAllocation": ["--overrides", str(overrides(tmp_path, 2048))],
        "copyVGPUProfiles": [*base, "--clone", "1E07:0000=1E30:12BA"],
        "a patch": [*base, "--patch", str(fix)],
        "patch.sh options": [*base, "--extra", "--no-klogtrace"],
        "the GPL flags": [*base, "--no-force-gpl"],
    }
    for what, args in changes.items():
        data, m = artifact_of(*args)
        assert data["cached"] is False and data["build_key"] not in keys, what
        keys.add(data["build_key"])
    assert m["options"]["doNotForceGPLLicense"] is True
    fix.write_text("--- /dev/null\n+++ b/NOTES.txt\n@@ -0,0 +1 @@\n+two\n")  # same name
    data, m = artifact_of(*base, "--patch", str(fix))
    assert data["cached"] is False and data["build_key"] not in keys
    assert (out / HOST_TREE / "NOTES.txt").read_text() == "two\n"
    again, m = artifact_of(*base)  # the first settings again: that artifact, from the cache
    assert again["cached"] is True and again["build_key"] == first["build_key"]
    assert again["nar_hash"] == first["nar_hash"]
    assert m["profileOverrides"] == {"333": {"vramAllocation": 3584}}


# --------------------------------------------------------------------- the last resort


def test_internal_error_is_only_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (an exception no layer expected) still ends in one line and exit 1.

    This is the only test that expects "internal error": every fault above has its class.
    """
    from vgpubuild import nar
    from vgpubuild.cli import app

    def bug(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(nar, "nar_hash", bug)
    monkeypatch.setitem(app._debug, "on", False)
    handlers = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        monkeypatch.setattr(sys, "argv", ["vgpubuild", "hash", "path", str(tmp_path)])
        with pytest.raises(SystemExit) as exit_:
            app.main()
        assert exit_.value.code == 1
        assert capsys.readouterr().err == (
            "error: internal error (RuntimeError: a bug). "
            "Run again with --debug and report the traceback.\n"
        )
        monkeypatch.setattr(sys, "argv", ["vgpubuild", "--debug", "hash", "path", str(tmp_path)])
        with pytest.raises(RuntimeError, match="a bug"):  # --debug: the traceback itself
            app.main()
    finally:
        for sig, handler in handlers.items():  # main() installs its own
            signal.signal(sig, handler)
