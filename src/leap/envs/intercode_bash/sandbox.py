"""Run agent commands in a bubblewrap sandbox, one episode root each.

Every command runs as ``bash -c`` inside ``bwrap``: the episode root is ``/``, ``/usr`` and
``/etc`` are read-only, there is no network (all namespaces unshared), the process gets a new
session and dies with its parent. Outside bwrap it runs as an unprivileged uid under
``prlimit`` (CPU seconds, address space, file size and number of processes), so a fork bomb,
an endless loop or a huge file stay bounded. When the process runs as root, the roots live on a
size-capped tmpfs, so filling the disk fills only that. A timed-out step is killed with its
whole process tree: the shell is PID 1 of the sandbox's PID namespace and dies with bwrap, and
when PID 1 dies the kernel kills everything inside. From inside, the sandbox looks like a
container: the process list holds the shell and its children, never bwrap's command line or a
host path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: top-level directories InterCode's image keeps out of its git repository
SYSTEM_DIRS = (
    "bin",
    "boot",
    "dev",
    "etc",
    "home",
    "lib",
    "media",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "srv",
    "sys",
    "usr",
    "var",
)
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: the unprivileged uids commands run as (one per sandbox, so process limits do not add up)
UID_BASE, UID_SPAN = 61000, 2000


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot run here."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 2 << 30
    file_bytes: int = 64 << 20
    processes: int = 128
    output_bytes: int = 256 << 10
    #: size of each episode root's own tmpfs (when running as root)
    root_bytes: int = 256 << 20


@dataclass
class CommandResult:
    output: str
    exit_code: int
    timed_out: bool


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _drain(stream, limit: int, sink: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Read a pipe to its end, keeping only the first ``limit`` bytes."""
    kept = 0
    while chunk := stream.read(65536):
        if kept < limit:
            sink.append(chunk[: limit - kept])
            kept += len(sink[-1])


class SandboxArea:
    """The directory that holds episode directories; stale ones are removed on start."""

    def __init__(self, base: Path | None = None) -> None:
        self.path = base or Path(tempfile.gettempdir()) / f"leap-intercode-{os.getuid()}"
        self.path.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o711)
        self.clean_stale()

    def clean_stale(self) -> None:
        """Remove episode directories left by processes that died (names start with their pid)."""
        for entry in self.path.iterdir():
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                _remove_episode_dir(entry)

    def new_dir(self, label: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{label}-", dir=self.path))
        path.chmod(0o711)  # the sandbox's uid must reach the root inside; nothing else is listable
        return path


def _remove_episode_dir(path: Path) -> None:
    root = path / "root"
    if os.path.ismount(root):
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _processes_of(uid: int) -> int:
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nUid:\t{uid}\t" in status.read_text():
                count += 1
        except OSError:
            continue
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Sandbox:
    """One episode's root directory and the way to run commands in it."""

    _next_uid = 0
    _uid_lock = threading.Lock()

    def __init__(self, area: SandboxArea, limits: Limits, *, unsafe_no_sandbox: bool = False) -> None:
        self.limits = limits
        self.unsafe = unsafe_no_sandbox
        if not unsafe_no_sandbox and bwrap_path() is None:
            raise SandboxUnavailable(
                "intercode-bash runs every command in a bubblewrap sandbox, and `bwrap` is not installed. "
                "Install it (Debian/Ubuntu: apt-get install bubblewrap; scripts/setup.sh does this), or set "
                "`unsafe_no_sandbox: true` in the environment options to run commands unconfined."
            )
        if unsafe_no_sandbox:
            warnings.warn(
                "intercode-bash: unsafe_no_sandbox is set; agent commands run unconfined on this "
                "machine, inside a temporary directory only by convention",
                stacklevel=2,
            )
        self.dir = area.new_dir("ep")
        self.root = self.dir / "root"
        self.git_dir = self.dir / "git"
        with Sandbox._uid_lock:
            self.uid = UID_BASE + (os.getpid() * 7 + Sandbox._next_uid) % UID_SPAN
            Sandbox._next_uid += 1

    # -- set-up ----------------------------------------------------------------------------------
    def build(self, tarball: Path) -> None:
        """Unpack the task's file system into a fresh root, then commit it to git.

        As root, the root is its own size-capped tmpfs: filling the disk fills only that, and
        `df` inside sees the same numbers in every episode of a task.
        """
        self.root.mkdir()
        if os.getuid() == 0 and not self.unsafe:
            mounted = subprocess.run(
                [
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    f"size={self.limits.root_bytes},mode=0755",
                    "leap-episode",
                    str(self.root),
                ],
                capture_output=True,
                text=True,
            )
            if mounted.returncode != 0:
                log.warning(
                    "no tmpfs for the episode root (%s): disk use is bounded by file size only",
                    mounted.stderr.strip(),
                )
        with tarfile.open(tarball) as tar:
            tar.extractall(self.root, filter="data")
        for name in ("tmp", "root", "home", "var", "opt", "srv", "media", "mnt", "run", "boot"):
            (self.root / name).mkdir(exist_ok=True)
        for name in ("bin", "sbin", "lib", "lib64"):
            if not (self.root / name).exists() and Path("/usr", name).exists():
                (self.root / name).symlink_to(f"usr/{name}")
        (self.root / "tmp").chmod(0o1777)
        info = self.git_dir / "info"
        self.git("init", "-q")
        info.mkdir(parents=True, exist_ok=True)
        (info / "exclude").write_text("".join(f"/{d}\n" for d in SYSTEM_DIRS))
        self.git("add", "-A")
        self.git(
            "-c",
            "user.name=leap",
            "-c",
            "user.email=leap@localhost",
            "commit",
            "-q",
            "-m",
            "set-up",
            "--allow-empty",
        )
        if os.getuid() == 0 and not self.unsafe:
            for path in [self.root, *self.root.rglob("*")]:
                if not path.is_symlink():
                    os.chown(path, self.uid, self.uid)

    def git(self, *args: str) -> str:
        """Git on the host, with the repository kept outside the root (the agent cannot touch it)."""
        done = subprocess.run(
            [
                "git",
                f"--git-dir={self.git_dir}",
                f"--work-tree={self.root}",
                "-c",
                "safe.directory=*",
                "-c",
                "core.quotepath=off",
                *args,
            ],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    # -- commands --------------------------------------------------------------------------------
    def _argv(self, command: str, cwd: str) -> list[str]:
        if self.unsafe:
            return ["bash", "-c", command]
        lim = self.limits
        # RLIMIT_NPROC counts every process of the uid: as root each sandbox has a uid of its own;
        # otherwise the cap sits above what the user already runs
        processes = lim.processes if os.getuid() == 0 else lim.processes + _processes_of(os.getuid())
        confine = [
            "prlimit",
            f"--cpu={lim.cpu_s}",
            f"--as={lim.memory_bytes}",
            f"--fsize={lim.file_bytes}",
            f"--nproc={processes}",
            "--",
        ]
        if os.getuid() == 0:
            confine = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", *confine]
        return [
            *confine,
            "bwrap",
            "--unshare-all",
            # inside, the sandbox's uid is root: files look as in InterCode's image (owned by root)
            "--unshare-user",
            "--uid",
            "0",
            "--gid",
            "0",
            "--die-with-parent",
            "--new-session",
            # the shell itself is PID 1 of the sandbox: the agent's process list shows the shell and
            # its children, as in a container, and never bwrap's command line (the host's paths)
            "--as-pid-1",
            "--bind",
            str(self.root),
            "/",
            "--ro-bind",
            "/usr",
            "/usr",
            "--ro-bind",
            "/etc",
            "/etc",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--chdir",
            cwd,
            "bash",
            "-c",
            command,
        ]

    def run(self, command: str, cwd: str = "/") -> CommandResult:
        """Run ``command`` with ``bash -c`` in ``cwd``. Background jobs it starts are waited for,
        within the same timeout, and killed with everything else when the timeout passes."""
        command = f"{command}\n__leap_status=$?\nwait\nexit $__leap_status"
        env = {"PATH": SAFE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        workdir = str(self.root / cwd.lstrip("/")) if self.unsafe else None
        proc = subprocess.Popen(
            self._argv(command, cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
        sink: list[bytes] = []
        reader = threading.Thread(
            target=_drain, args=(proc.stdout, self.limits.output_bytes, sink), daemon=True
        )
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=self.limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=2)
        output = b"".join(sink).decode("utf-8", errors="replace")
        return CommandResult(output, proc.returncode, timed_out)

    def close(self) -> None:
        _remove_episode_dir(self.dir)
