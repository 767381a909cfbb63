"""Child processes that never outlive leap: a vLLM server, training processes.

:func:`guarded_command` runs a Python module in a child that first asks the kernel to send it
SIGTERM when leap's process dies, however it dies (SIGKILL included: Linux's parent-death
signal), and exits at once if leap is already gone. Each such child is started in a process
group of its own and handles SIGTERM by ending its own children (vLLM's engine, torchrun's
workers), so nothing is left running after leap.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

# run first in the child: the parent-death signal, a check that the parent is still the one that
# started it, then the module as __main__ with the rest of the arguments
_GUARD = (
    "import ctypes, os, runpy, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(0)\n"
    "sys.argv = [sys.argv[2], *sys.argv[3:]]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def guarded_command(python: str, module: str, args: Sequence[str]) -> list[str]:
    """The command line that runs ``python -m module *args`` under the parent-death guard."""
    return [python, "-c", _GUARD, str(os.getpid()), module, *args]


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
