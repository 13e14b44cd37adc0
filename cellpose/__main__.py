"""``python -m cellpose``: see ``cellpose.cli``.

After ``main`` returns, every output is written and closed, so the process ends the way Python would end it
(non-daemon threads joined, ``atexit`` handlers run, standard streams flushed) minus the last step, the
teardown of every loaded module: that alone took 0.4-0.6 s after ``import torch`` and about 1 s after a run
with OpenVINO (AMD EPYC, flags avx2 fma, 2 cores), for nothing. ``CELLPOSE_FULL_EXIT=1`` keeps the teardown
(for tools that need it, such as leak checkers).
"""
import atexit
import os
import sys
import threading

from .cli import main


def _exit_without_teardown(status) -> None:
    """End the process with ``status`` (an int or None, as ``sys.exit`` takes), skipping module teardown."""
    code = 0 if status is None else int(status)
    shutdown = getattr(threading, "_shutdown", None)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if os.environ.get("CELLPOSE_FULL_EXIT") == "1" or shutdown is None or run_exitfuncs is None:
        sys.exit(code)
    shutdown()
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            code = code or 120
    os._exit(code)


def entry() -> None:
    """Console-script entry point (``cellpose-tb``): ``main`` with the exit above."""
    _exit_without_teardown(main())


if __name__ == "__main__":
    entry()
