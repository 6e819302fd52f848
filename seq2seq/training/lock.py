"""One training run per run folder: rank 0 holds an exclusive lock on RUN_DIR/.lock while the run lasts.

The lock is an advisory ``flock`` on the file, so the kernel drops it when its holder exits in any way, SIGKILL
included: a folder left by a killed run is free for ``resume=true``, no stale lock to remove. The file holds
the holder's ``pid host`` (for the message a second run gets) and its modification time is the holder's
heartbeat, touched every HEARTBEAT_S seconds: ranks > 0, which never take the lock, watch it to learn whether
rank 0 is still alive.
"""
import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

from seq2seq.atomic_files import RunError

HEARTBEAT_S = 5.0  # how often the holder touches the lock file
NAME = ".lock"


class RunLock:
    """``with RunLock(run_dir):`` the folder is this process's, or RunError names the folder and the holder."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = Path(folder), Path(folder) / NAME
        self._fd: int | None = None
        self._stop = threading.Event()

    def __enter__(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(f"{self.folder} is in use by another training run ({holder(self.folder)}); wait for it "
                           f"to end, or choose another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        self._stop.clear()
        threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True).start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:  # the folder was removed under us: nothing to signal any more
                return

    def __exit__(self, kind: type | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def holder(folder: Path) -> str:
    """'pid N on HOST' of the run holding `folder`, as its lock file says (it may be a moment late to say it)."""
    for _ in range(20):
        try:
            words = (Path(folder) / NAME).read_text().split()
        except OSError:
            words = []
        if len(words) == 2:
            return f"pid {words[0]} on {words[1]}"
        time.sleep(0.05)
    return "pid unknown"


class Heartbeat:
    """Seen from another process: is the lock holder of `folder` alive? `silent_s()` is the time since the lock
    file last changed (or since watching began, while there is none), measured on this machine's clock so that
    clocks of other nodes do not matter."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / NAME
        self._seen, self._since = self._stamp(), time.monotonic()

    def _stamp(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def silent_s(self) -> float:
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen, self._since = stamp, time.monotonic()
        return time.monotonic() - self._since
