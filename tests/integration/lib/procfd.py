# SPDX-License-Identifier: MIT
"""What a process has open: for tests that act while it reads a file."""
import os


def open_paths(pid):
    """The paths process @pid has open; none once it has ended."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except FileNotFoundError:
        return []
    paths = []
    for fd in fds:
        try:
            paths.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass  # closed meanwhile
    return paths
