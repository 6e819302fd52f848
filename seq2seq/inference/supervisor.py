"""The service's main process as a supervisor: a dead process ends the whole service, loudly and promptly,
and a SIGTERM or SIGINT drains it, every child ending before the main process.

LitServe runs four kinds of process: the main one, a multiprocessing manager holding the queues between
the others (the "queue process"), the inference workers (spawned) and the HTTP processes (forked).
When one of them dies the service stops: the HTTP processes answer every request they hold, and every
later one, with 503 at once (SIGUSR1 to ``Guard``), all processes end and the main one prints one
``error:`` line and exits with status 1, for its supervisor (systemd, Kubernetes, SLURM) to start it
again. Restarting the dead worker in place (``LitServer(restart_workers=True)``) is not what we do:
LitServe fails the requests a dead worker held in the main process's response buffer, but they wait in
the HTTP processes' copies, so they hang until the timeout; a restarted worker also does not help when
the dead process is the queue process or an HTTP process, and those would need restarting the whole tree
anyway. One answer for every death is easier to rely on, and a supervisor restarts a process tree cleanly.

The listening socket is held by the HTTP processes only: LitServe binds it in the main process before it
forks the queue process, so both would keep the port accepting connections that nobody answers after
the HTTP process died; the main process closes its copy once the HTTP processes are forked, and the
queue process closes its copy right after its fork. Every child is killed by the kernel when the main
process dies (``PR_SET_PDEATHSIG``), so a killed main process leaves no orphan serving an old model.
"""
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from multiprocessing import resource_tracker, util
from typing import Any

import litserve
from litserve.server import no_auth

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often the main process looks at its children: a death is acted on within this
STOP_S = 5.0  # how long a child may take to end after SIGTERM before it is killed
_forking_queue_process = False  # read by the queue process just after its fork


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent ends (Linux), and end now if it already has."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _after_fork_in_child(parent: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the main process's draining handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    die_with_parent(parent)
    if _forking_queue_process:
        _close_tcp_sockets()


def _close_tcp_sockets() -> None:
    """Close the TCP sockets this process inherited: the port LitServe bound (not yet listening) for the HTTP
    processes; the queue process itself speaks over Unix sockets only."""
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=int(name))
        except OSError:  # not a socket, or the listing's own descriptor
            continue
        tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
        sock.close() if tcp else sock.detach()


def _how(process: mp.Process) -> str:
    code = process.exitcode
    return f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"


def stop(processes: list[mp.Process], signum: int, wait: float) -> None:
    """Send `signum` to those alive, wait up to `wait` seconds for all, SIGKILL the rest."""
    for p in processes:
        if p.is_alive():
            os.kill(p.pid, signum)
    for p in processes:
        p.join(wait)  # the waits overlap: at most `wait` in all, as every process got its signal first
        if p.is_alive():
            p.kill()
            p.join()


class Service(litserve.LitServer):
    """LitServer with the supervision above; ``grace_period``: seconds a SIGTERM leaves requests to finish."""

    def __init__(self, *args: Any, grace_period: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._monitor_workers = False  # LitServe's monitor would shut down with an EOFError traceback
        self.uvicorn_graceful_timeout = self.grace_period = grace_period
        self.http_processes: list[mp.Process] = []
        self.stop_requested = threading.Event()

    def run(self, *args: Any, **kwargs: Any) -> None:
        """LitServer.run with the signals and forks handled as above; it never returns (the process exits)."""
        parent = os.getpid()
        os.register_at_fork(after_in_child=lambda: _after_fork_in_child(parent))
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop_requested.set())
        super().run(*args, **kwargs)

    def setup_auth(self, lit_api: litserve.LitAPI | None = None) -> Callable:
        return no_auth  # Guard checks the key, and keeps /health open for probes

    def _init_manager(self, num_api_servers: int) -> Any:
        global _forking_queue_process
        _forking_queue_process = True
        try:
            manager = super()._init_manager(num_api_servers)
        finally:
            _forking_queue_process = False
        # LitServe's main thread waits on an event of the queue process, and shuts down with tracebacks when
        # that process ends; it waits on one of this process instead, and _supervise ends the process
        self._shutdown_event = threading.Event()
        threading.Thread(target=self._supervise, args=(manager._process,), daemon=True, name="supervisor").start()
        return manager

    def _start_server(self, port: int, num_uvicorn_servers: int, log_level: str, sockets: list[socket.socket],
                      *args: Any, **kwargs: Any) -> dict:
        workers = super()._start_server(port, num_uvicorn_servers, log_level, sockets, *args, **kwargs)
        self.http_processes = list(workers.values())
        for sock in sockets:
            sock.close()  # the HTTP processes have theirs
        return workers

    def _children(self, queue_process: mp.Process) -> list[tuple[str, mp.Process]]:
        workers = list(getattr(self, "inference_workers", []))  # LitServe sets them after the queue process
        return [("queue process", queue_process), *(("inference worker", p) for p in workers),
                *(("HTTP process", p) for p in self.http_processes)]

    def _supervise(self, queue_process: mp.Process) -> None:
        while not self.stop_requested.wait(POLL_S):
            dead = next(((kind, p) for kind, p in self._children(queue_process) if not p.is_alive()), None)
            if dead is not None and not self.stop_requested.is_set():
                self._fail(queue_process, *dead)
        log.warning("stopping: new connections refused, requests in flight get up to %g s", self.grace_period)
        self._end(queue_process, self.grace_period + STOP_S)
        self._exit(0, "stopped")

    def _fail(self, queue_process: mp.Process, kind: str, dead: mp.Process) -> None:
        for p in self.http_processes:
            if p.is_alive():
                os.kill(p.pid, signal.SIGUSR1)  # Guard: 503 for every request held, and every later one
        self._end(queue_process, STOP_S)
        self._exit(1, f"error: the service's {kind} (pid {dead.pid}) ended ({_how(dead)}); the service stopped, "
                      "for its supervisor to start it again")

    def _end(self, queue_process: mp.Process, http_wait: float) -> None:
        """The HTTP processes first (they may still need the workers), then the workers, then the queues."""
        stop(self.http_processes, signal.SIGTERM, http_wait)
        stop(list(getattr(self, "inference_workers", [])), signal.SIGTERM, STOP_S)
        stop([queue_process], signal.SIGTERM, STOP_S)
        util._run_finalizers()  # what interpreter exit would do (os._exit skips it): semaphores unlinked
        resource_tracker._resource_tracker._stop()  # the helper process spawning the workers started

    @staticmethod
    def _exit(status: int, message: str) -> None:
        """End the main process from this thread; its main thread waits in LitServer.run on an event never set."""
        if status:
            print(message, file=sys.stderr)
        else:
            log.warning(message)
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(status)
