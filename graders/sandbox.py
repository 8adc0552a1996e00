"""One sandbox per submission: Debian's bubblewrap on real kernel isolation.

What the student's code gets (as PrairieLearn and CodeRunner/Jobe draw the line):

* no network: a private network namespace with only a loopback interface;
* a private PID namespace: every process dies with the sandbox, none outlives it;
* a read-only view of the runtime only: the Python installation, the course's venv, the
  ``sdcourse`` package and ``data/`` (the tiny models). No ``solutions/``, no ``graders/``, no
  workspace, no gradebook, no other student's files: those paths do not exist inside;
* a private, size-capped scratch directory (tmpfs) as working directory and HOME, and the
  read-only job folder the trusted side prepared (``/grader``: the prepared notebook, the
  lesson's run functions, the packed inputs);
* an unprivileged user (a uid of its own per worker slot), no capabilities, a new session;
* limits: memory and number of processes (cgroup v1 ``memory`` and ``pids`` controllers when
  they can be created, else ``RLIMIT_AS`` / ``RLIMIT_NPROC``), CPU time (``RLIMIT_CPU``),
  file size (``RLIMIT_FSIZE``), wall time per cell (in the executor) and per submission
  (here: the whole sandbox is killed).

The sandbox's only channel back is its standard output, read here with a size cap; the
trusted side treats everything on it as untrusted data.

Where bubblewrap is not available (no package, user namespaces disabled), grading refuses to
run unless the instructor passes ``--no-sandbox`` explicitly (README: "Grading without a
sandbox" shows how to run the same command inside a container instead).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def base_uid() -> int:
    """Sandboxes run as uid ``base + slot`` (default 61000; ``$SDCOURSE_SANDBOX_UID`` moves it,
    e.g. to keep two grading runs on one machine apart)."""
    return int(os.environ.get("SDCOURSE_SANDBOX_UID", "61000"))


@dataclass(frozen=True)
class Limits:
    memory_mb: int = int(os.environ.get("SDCOURSE_SANDBOX_MEMORY_MB", "6144"))  # kernel + torch + a tiny pipeline: ~1.5-2.5 GB
    pids: int = 256
    cpu_seconds: int = 1800      # per process (RLIMIT_CPU)
    file_mb: int = 256           # largest file a process may write (RLIMIT_FSIZE)
    scratch_mb: int = 1024       # the writable tmpfs (counts against memory too)
    wall_seconds: int = 900      # the whole submission
    stdout_mb: int = 256         # what the sandbox may send back


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class Result:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    seconds: float
    timed_out: bool = False
    truncated: bool = False
    notes: list[str] = field(default_factory=list)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


_PROBE: dict[str, object] = {}


def check() -> tuple[bool, str]:
    """(usable, why not): bubblewrap installed and able to create the namespaces we need."""
    if "result" in _PROBE:
        return _PROBE["result"]  # type: ignore[return-value]
    bw = bwrap_path()
    if not bw:
        res = (False, "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` "
                      "(make setup-grading does it)")
    else:
        try:
            p = subprocess.run([bw, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                                "--proc", "/proc", "--dev", "/dev", "true"],
                               capture_output=True, text=True, timeout=30)
            res = (p.returncode == 0, p.stderr.strip()[:300] or "ok")
        except (OSError, subprocess.TimeoutExpired) as exc:
            res = (False, f"bwrap failed to start: {exc}")
    _PROBE["result"] = res
    return res


# --------------------------------------------------------------------------- cgroups

def sweep_stale_cgroups() -> None:
    """Remove the empty sandbox groups of grader processes that no longer exist (a grader
    killed outright cannot remove its own). Groups are named ``<grader pid>-<slot>-<random>``;
    a group that still holds a process is never touched (rmdir refuses it)."""
    for controller in ("memory", "pids"):
        base = CGROUP_ROOT / controller / "sdgrade"
        try:
            entries = list(base.iterdir())
        except OSError:
            continue
        for path in entries:
            pid = path.name.split("-", 1)[0]
            if not path.is_dir() or not pid.isdigit() or Path(f"/proc/{pid}").exists():
                continue
            try:
                path.rmdir()
            except OSError:
                pass


class _Cgroups:
    """Per-sandbox cgroup v1 memory and pids groups (when this machine lets us create them)."""

    def __init__(self, name: str, limits: Limits):
        sweep_stale_cgroups()
        self.paths: list[Path] = []
        self.notes: list[str] = []
        for controller, settings in (
                ("memory", {"memory.limit_in_bytes": limits.memory_mb * 2**20,
                            "memory.swappiness": 0}),
                ("pids", {"pids.max": limits.pids})):
            path = CGROUP_ROOT / controller / "sdgrade" / name
            try:
                path.mkdir(parents=True, exist_ok=True)
                for key, value in settings.items():
                    try:
                        (path / key).write_text(str(value))
                    except OSError:
                        if key != "memory.swappiness":
                            raise
                self.paths.append(path)
            except OSError as exc:
                self.notes.append(f"no {controller} cgroup ({exc.strerror}); using rlimits")
        self.memory = any(p.parts[-3] == "memory" for p in self.paths)
        self.pids = any(p.parts[-3] == "pids" for p in self.paths)

    def procs_files(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in self.paths]

    def oom_killed(self) -> bool:
        for p in self.paths:
            if p.parts[-3] == "memory":
                try:
                    return int((p / "memory.failcnt").read_text()) > 0
                except (OSError, ValueError):
                    return False
        return False

    def kill_all(self) -> None:
        for p in self.paths:
            try:
                for pid in (p / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
            except OSError:
                pass

    def remove(self) -> None:
        for p in self.paths:
            for _ in range(50):
                try:
                    p.rmdir()
                    break
                except OSError:
                    self.kill_all()
                    time.sleep(0.1)


# --------------------------------------------------------------------------- launching

def _dirs_for(path: str, made: set[str]) -> list[str]:
    """``--perms 0755 --dir`` for every ancestor of a mount point (bwrap would make them 0700)."""
    args = []
    parts = Path(path).parts
    for i in range(2, len(parts)):
        d = str(Path(*parts[:i]))
        if d not in made:
            made.add(d)
            args += ["--perms", "0755", "--dir", d]
    return args


def runtime_paths() -> list[Path]:
    """What the student's code may read: the interpreter, the venv, the installed ``sdcourse``
    package and the ``data/`` folder beside it (the tiny models)."""
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix), *course_runtime()]
    return [p for p in dict.fromkeys(paths) if p.exists()]


def course_runtime() -> list[Path]:
    """The course's own part of ``runtime_paths``: the ``sdcourse`` package and ``data/``."""
    import sdcourse

    package = Path(sdcourse.__file__).resolve().parent
    return [package, package.parent / "data"]


#: how many unreadable paths ``unreadable_runtime`` lists before it stops looking
UNREADABLE_SHOWN = 5


def unreadable_runtime(roots: list[Path] | None = None, limit: int = UNREADABLE_SHOWN) -> list[str]:
    """Files and folders under ``roots`` (default ``course_runtime()``) that the sandbox's user
    cannot read, as ``"path (mode 0600)"``, at most ``limit``. That user
    owns none of them and is in none of their groups, so only the permission bits for others
    count. diffusers and transformers save weights through a temporary file of mode 0600: a
    rebuild of the tiny models would otherwise leave every lesson that loads one failing
    inside the sandbox, for every submission."""
    import stat

    bad: list[str] = []
    for root in course_runtime() if roots is None else roots:
        if not root.exists():
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for path, need in [(folder, stat.S_IROTH | stat.S_IXOTH)] + [(os.path.join(folder, f), stat.S_IROTH) for f in files]:
                try:
                    mode = os.stat(path).st_mode
                except OSError:
                    continue  # a dangling link: nothing to read either way
                if mode & need != need:
                    bad.append(f"{path} (mode {stat.S_IMODE(mode):04o})")
                    if len(bad) >= limit:
                        return bad
    return bad


def unreadable_message(bad: list[str]) -> str:
    """What ``unreadable_runtime`` found, and the command that fixes it."""
    return ("the sandbox's user cannot read " + ", ".join(bad) + (" and more" if len(bad) >= UNREADABLE_SHOWN else "")
            + f"; make them readable: `chmod -R a+rX {' '.join(str(p) for p in course_runtime())}`")


def command(argv: list[str], job_dir: Path, limits: Limits, uid: int, env: dict[str, str],
            rlimit_as: int | None = None) -> list[str]:
    bw = bwrap_path()
    if not bw:
        raise SandboxUnavailable(check()[1])
    made: set[str] = set()
    args = [bw, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            "--hostname", "sandbox"]
    for sys_dir in ("/usr", "/bin", "/lib", "/lib64", "/sbin"):
        if os.path.exists(sys_dir):
            args += ["--ro-bind", sys_dir, sys_dir]
    args += ["--perms", "0755", "--dir", "/etc"]
    for f in ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/fonts"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    made.update({"/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc", "/tmp"})
    # the private /tmp first, the runtime over it: a course checked out under /tmp (a CI
    # runner's work folder) keeps its venv and package visible inside the sandbox
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(256 * 2**20), "--tmpfs", "/tmp",
             "--perms", "0777", "--size", str(limits.scratch_mb * 2**20), "--tmpfs", "/sandbox"]
    for p in runtime_paths():
        args += _dirs_for(str(p), made) + ["--ro-bind", str(p), str(p)]
    args += ["--ro-bind", str(job_dir), "/grader", "--chdir", "/sandbox"]
    for k, v in env.items():
        args += ["--setenv", k, v]
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    rl = ["prlimit", f"--cpu={limits.cpu_seconds}", f"--fsize={limits.file_mb * 2**20}",
          "--core=0", f"--nproc={limits.pids}"] + ([f"--as={rlimit_as}"] if rlimit_as else [])
    return args + ["--"] + [shutil.which(drop[0]) or "/usr/bin/setpriv"] + drop[1:] + \
        [shutil.which(rl[0]) or "/usr/bin/prlimit"] + rl[1:] + ["--"] + argv


def run(argv: list[str], job_dir: Path, limits: Limits = Limits(), slot: int = 0,
        env: dict[str, str] | None = None) -> Result:
    """Run ``argv`` in a fresh sandbox; kill everything in it after ``limits.wall_seconds``."""
    ok, why = check()
    if not ok:
        raise SandboxUnavailable(why)
    bad = unreadable_runtime()
    if bad:
        raise SandboxUnavailable(unreadable_message(bad))
    uid = base_uid() + slot
    name = f"{os.getpid()}-{slot}-{uuid.uuid4().hex[:8]}"
    groups = _Cgroups(name, limits)
    # without a memory cgroup, cap virtual memory instead (torch maps far more than it uses)
    rlimit_as = None if groups.memory else limits.memory_mb * 2**20 * 4
    env = dict(env or {})
    env.setdefault("PATH", f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin")
    env.setdefault("HOME", "/sandbox")
    cmd = command(argv, job_dir, limits, uid, env, rlimit_as)
    procs_files = groups.procs_files()

    def enter_groups():  # runs in the child between fork and exec
        os.setsid()
        for f in procs_files:
            try:
                with open(f, "w") as fh:
                    fh.write(str(os.getpid()))
            except OSError:
                pass

    t0 = time.perf_counter()
    out_cap = limits.stdout_mb * 2**20
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=enter_groups, close_fds=True)
    chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    state = {"bytes": 0, "truncated": False}

    def pump(stream, sink, cap):
        while True:
            data = stream.read(65536)
            if not data:
                break
            if state["bytes"] + len(data) > cap:
                state["truncated"] = True
                continue  # drain, drop
            state["bytes"] += len(data) if sink is chunks else 0
            sink.append(data)

    threads = [threading.Thread(target=pump, args=(proc.stdout, chunks, out_cap), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, err_chunks, 2**20), daemon=True)]
    for t in threads:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.kill()
        proc.wait()
        groups.kill_all()
        for t in threads:
            t.join(timeout=10)
        notes = list(groups.notes)
        if groups.oom_killed():
            notes.append(f"the memory limit ({limits.memory_mb} MiB) was reached")
        groups.remove()
    return Result(proc.returncode, b"".join(chunks), b"".join(err_chunks)[-20000:],
                  time.perf_counter() - t0, timed_out, state["truncated"], notes)
