"""Unit tests of the grading machinery (plain-data packing, checks, the sandbox, collect, the
status table) and the student-facing helpers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from graders import course, sandbox
from graders.checks import common, runtime
from graders.checks import l2_conditioning as l2
from sdcourse import get_device, testing


def test_forbid_traps_the_oracle_at_home_and_where_the_notebook_bound_it(monkeypatch):
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "group_norm_alias", F.group_norm, raising=False)
    with common.forbid(["torch.nn.functional.group_norm"]):
        with pytest.raises(common.OracleCalled, match="write it yourself"):
            F.group_norm(torch.randn(1, 2, 2, 2), 1)
        with pytest.raises(common.OracleCalled):
            main.group_norm_alias(torch.randn(1, 2, 2, 2), 1)
        with pytest.raises(common.OracleCalled):   # the nn.Module path reaches F.group_norm too
            torch.nn.GroupNorm(1, 2)(torch.randn(1, 2, 2, 2))
    assert main.group_norm_alias is F.group_norm  # restored
    F.group_norm(torch.randn(1, 2, 2, 2), 1)


def test_forbid_traps_classes():
    from diffusers.models.normalization import AdaGroupNorm
    import diffusers.models.normalization as norm_mod
    with common.forbid(["diffusers.models.normalization.AdaGroupNorm"]):
        with pytest.raises(common.OracleCalled):
            norm_mod.AdaGroupNorm(4, 4, 2)
    assert norm_mod.AdaGroupNorm is AdaGroupNorm


def test_a_check_reports_a_crash_with_the_input_that_caused_it():
    def broken(t, dim, max_period=10000):
        raise IndexError("boom")
    with pytest.raises(common.CheckFailed, match=r"IndexError: boom\non a fresh input: t=tensor"):
        l2.check("timestep_embedding_shape", broken)


def test_a_check_says_not_implemented():
    def stub(*a, **k):
        raise NotImplementedError()
    with pytest.raises(common.CheckFailed, match="not implemented yet"):
        l2.check("group_norm_values", stub)


def test_checks_write_nothing_to_stderr(capfd):
    import warnings

    def noisy(x, num_groups, eps=1e-5):
        warnings.warn("noise")
        print("to stderr", file=sys.stderr)
        b = x.shape[0]
        g = x.reshape(b, num_groups, -1)
        return ((g - g.mean(-1, keepdim=True)) / torch.sqrt(g.var(-1, keepdim=True, unbiased=False) + eps)).reshape(x.shape)
    l2.check("group_norm_values", noisy)
    assert capfd.readouterr().err == ""


def test_expect_close_names_the_matching_suspect():
    good = torch.zeros(3)
    wrong = torch.ones(3)
    with pytest.raises(common.CheckFailed, match="the sines first"):
        common.expect_close(wrong, good, "emb", suspects=[common.Suspect("s", torch.ones(3), "the sines first")])
    with pytest.raises(common.CheckFailed, match="max \\|difference\\| = 1"):
        common.expect_close(wrong, good, "emb")


def test_visible_helpers_teach():
    with pytest.raises(AssertionError, match=r"has shape \(2,\), expected \(3,\)"):
        testing.check_shape(torch.zeros(2), (3,), "x")
    with pytest.raises(AssertionError, match=r"max \|difference\| = 0.5 at index \(1,\)"):
        testing.check_close(torch.tensor([0.0, 0.5]), [0.0, 0.0], "x")
    with pytest.raises(AssertionError, match="dtype"):
        testing.check_dtype(torch.zeros(1, dtype=torch.float64), torch.float32)
    testing.check_close(torch.tensor([1.0]), [1.0 + 1e-7])


def test_get_device_env_override(monkeypatch):
    monkeypatch.setenv("SDCOURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("SDCOURSE_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device()


# ------------------------------------------------------------------ plain data across the boundary

def test_pack_round_trips_plain_data_only():
    value = {"t": torch.arange(6).reshape(2, 3), "f": 0.25, "i": -3, "s": "x", "b": True, "n": None,
             "nested": [(1, torch.ones(2, dtype=torch.float64)), {"k": []}]}
    back = runtime.unpack(runtime.pack(value))
    assert back["f"] == 0.25 and back["i"] == -3 and back["s"] == "x" and back["b"] is True and back["n"] is None
    assert torch.equal(back["t"], value["t"]) and isinstance(back["nested"][0], tuple)
    assert back["nested"][0][1].dtype == torch.float64
    for bad in (lambda x: x, torch.nn.Linear(2, 2), object(), {1: 2}):
        with pytest.raises(runtime.PackError):
            runtime.pack(bad)
    with pytest.raises(runtime.PackError, match="limit"):
        runtime.pack(torch.zeros(2**20), limit=2**20)


def test_a_tensor_subclass_arrives_as_a_plain_tensor():
    class Liar(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in ("__sub__", "sub"):
                return torch.zeros(())
            return super().__torch_function__(func, types, args, kwargs or {})
    back = runtime.unpack(runtime.pack(torch.ones(3).as_subclass(Liar)))
    assert type(back) is torch.Tensor and float((back - torch.zeros(3)).sum()) == 3.0


def test_unpack_refuses_malformed_or_executable_bytes():
    import pickle

    for data in (b"", b"\x00" * 8, b"not safetensors at all", pickle.dumps({"a": 1}),
                 runtime.pack({"a": 1})[:-5]):
        with pytest.raises(runtime.PackError):
            runtime.unpack(data)


def test_judge_words_errors_and_missing_runs_for_the_student():
    checks = l2.CHECKS
    seed = checks["group_norm_values"].seeds[0]
    with pytest.raises(common.CheckFailed, match="did not run"):
        checks.judge("group_norm_values", {seed: None})
    err = runtime.pack(runtime.error_record(ValueError("bad axis")))
    with pytest.raises(common.CheckFailed, match="raised ValueError: bad axis"):
        checks.judge("group_norm_values", {s: err for s in checks["group_norm_values"].seeds})


# ------------------------------------------------------------------ the sandbox

def _need_sandbox():
    ok, why = sandbox.check()
    if not ok:
        if os.environ.get("SDCOURSE_REQUIRE_ALL") == "1":
            pytest.fail(why)
        pytest.skip(why)


def test_the_sandbox_sees_the_runtime_only_and_no_network(tmp_path):
    _need_sandbox()
    (tmp_path / "job.txt").write_text("hello")
    tmp_path.chmod(0o755)
    code = ("import os, socket, json\n"
            "seen = {p: os.path.exists(p) for p in " + repr([str(course.SOURCE), str(course.GRADERS),
                                                              str(course.WORKSPACE), str(course.PACKAGE)]) + "}\n"
            "try:\n    socket.create_connection(('127.0.0.1', 22), timeout=2); net = 'open'\n"
            "except OSError as e:\n    net = type(e).__name__\n"
            "try:\n    open(os.path.join(" + repr(str(course.PACKAGE)) + ", 'x'), 'w'); ro = False\n"
            "except OSError:\n    ro = True\n"
            "print(json.dumps({'uid': os.getuid(), 'pid': os.getpid(), 'seen': seen, 'net': net, 'ro': ro,"
            " 'job': open('/grader/job.txt').read()}))\n")
    res = sandbox.run([sys.executable, "-c", code], tmp_path, sandbox.Limits(wall_seconds=60), slot=99)
    out = json.loads(res.stdout.decode().strip().splitlines()[-1])
    assert out["uid"] == sandbox.base_uid() + 99 and out["pid"] < 10, out
    assert out["seen"] == {str(course.SOURCE): False, str(course.GRADERS): False,
                           str(course.WORKSPACE): False, str(course.PACKAGE): True}, out
    assert out["net"] != "open" and out["ro"] is True and out["job"] == "hello", out


def test_a_course_checked_out_under_tmp_keeps_its_runtime_inside_the_sandbox(monkeypatch, tmp_path):
    """The sandbox's private /tmp is mounted first and the runtime bound over it: a CI runner
    that checks the course out under /tmp must not lose its venv inside the sandbox."""
    if not sandbox.bwrap_path():
        pytest.skip("bubblewrap is not installed")
    venv = Path("/tmp/runner/work/course/.venv")
    monkeypatch.setattr(sandbox, "runtime_paths", lambda: [venv])
    args = sandbox.command(["true"], tmp_path, sandbox.Limits(), 65000, {})
    tmpfs = [i for i, a in enumerate(args) if a == "--tmpfs" and args[i + 1] == "/tmp"]
    binds = [i for i, a in enumerate(args) if a == "--ro-bind" and args[i + 1] == str(venv)]
    assert tmpfs and binds and tmpfs[0] < binds[0], args


def test_the_sandbox_kills_what_outlives_it_and_stops_at_its_wall_time(tmp_path):
    _need_sandbox()
    tmp_path.chmod(0o755)
    code = "import subprocess, time; subprocess.Popen(['sleep', '300'], start_new_session=True); time.sleep(300)"
    res = sandbox.run([sys.executable, "-c", code], tmp_path, sandbox.Limits(wall_seconds=5), slot=98)
    assert res.timed_out
    uid = str(sandbox.base_uid() + 98)
    ps = subprocess.run(["ps", "-eo", "uid="], capture_output=True, text=True).stdout.split()
    assert uid not in ps, "a sandboxed process outlived its sandbox"


@pytest.mark.parametrize("enforcer", ["cgroup", "rlimit"])
def test_the_memory_limit_stops_a_hog_and_the_result_says_so(tmp_path, monkeypatch, enforcer):
    """A process that allocates far past ``memory_mb`` is stopped and the result names the
    memory limit: killed by the memory cgroup where one can be made, else a MemoryError from
    RLIMIT_AS (forced here by a cgroup root that cannot be written). The wall limit is
    generous: a fresh VM hands out new memory slowly."""
    _need_sandbox()
    if enforcer == "rlimit":
        monkeypatch.setattr(sandbox, "CGROUP_ROOT", Path("/proc/no-cgroups-here"))
    tmp_path.chmod(0o755)
    code = ("import numpy as np\n"
            "hog = []\n"
            "try:\n"
            "    for _ in range(64):\n"
            "        hog.append(np.ones(2**23))  # 64 MiB a step, 4 GiB in all\n"
            "except MemoryError:\n"
            "    print('MemoryError after', len(hog) * 64, 'MiB', flush=True)\n"
            "    raise SystemExit(3)\n"
            "print('allocated', len(hog) * 64, 'MiB')\n")
    limits = sandbox.Limits(memory_mb=512, wall_seconds=300)
    res = sandbox.run([sys.executable, "-c", code], tmp_path, limits, slot=97)
    out = res.stdout.decode()
    assert not res.timed_out, "the hog was not stopped before the wall limit"
    assert "allocated" not in out, f"4 GiB allocated under a 512 MiB limit: {out}"
    if enforcer == "rlimit" or any("no memory cgroup" in n for n in res.notes):
        assert any("no memory cgroup" in n for n in res.notes), res.notes
        assert res.returncode == 3 and "MemoryError" in out, (res.returncode, out, res.notes)
    else:
        assert res.returncode in (137, -9), (res.returncode, out, res.notes)
        assert any("memory limit (512 MiB) was reached" in n for n in res.notes), res.notes
    mine = [p for p in (sandbox.CGROUP_ROOT / "memory" / "sdgrade").glob(f"{os.getpid()}-97-*")]
    assert not mine, f"the sandbox's cgroup was left behind: {mine}"


def test_cgroups_left_by_a_killed_grader_are_swept(tmp_path, monkeypatch):
    """A grader killed outright (SIGKILL, power loss) cannot remove its cgroups; the next
    sandbox removes empty groups whose grader process is gone, and no others."""
    monkeypatch.setattr(sandbox, "CGROUP_ROOT", tmp_path)
    base = tmp_path / "memory" / "sdgrade"
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name in (f"{dead.pid}-0-aaaa", f"{os.getpid()}-0-bbbb", "not-a-sandbox"):
        (base / name).mkdir(parents=True)
    sandbox.sweep_stale_cgroups()
    assert sorted(p.name for p in base.iterdir()) == sorted([f"{os.getpid()}-0-bbbb", "not-a-sandbox"])


# ------------------------------------------------------------------ collect and status

def test_collect_refuses_links_renames_one_notebook_and_reports_several(tmp_path, monkeypatch):
    from graders import grade
    from graders.status import StatusStore

    ws = tmp_path / "ws"
    monkeypatch.setattr(course, "WORKSPACE", ws)
    aid = course.assignments()[0]
    src = tmp_path / "downloads"
    (src / "alice").mkdir(parents=True)
    (src / "alice" / f"Copy of {aid}.ipynb").write_text("{}")
    (src / "bob").mkdir()
    (src / "bob" / f"{aid}.ipynb").write_text("{}")
    (src / "bob" / f"{aid} (1).ipynb").write_text("{}")
    (src / "eve").mkdir()
    (src / "eve" / f"{aid}.ipynb").symlink_to("/etc/passwd")
    (src / "mallory").symlink_to(tmp_path)
    assert grade.collect(src) == 0
    assert (ws / "submitted" / "alice" / aid / f"{aid}.ipynb").read_text() == "{}"
    assert not (ws / "submitted" / "bob").exists() and not (ws / "submitted" / "eve").exists()
    assert not (ws / "submitted" / "mallory").exists()
    store = StatusStore("sqlite:///" + str(ws / "gradebook.db"))
    assert "Copy of" in store.get(aid, "alice").detail
    assert store.get(aid, "bob").status == "failed" and "several" in store.get(aid, "bob").detail
    store.close()
