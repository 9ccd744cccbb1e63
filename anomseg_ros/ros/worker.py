"""The detector node's worker (ROS-free): frames handed over through one slot per camera and
taken, in batches, by one thread.

- ``offer(camera, frame)`` puts a camera's newest frame in its slot. A frame still waiting
  there is replaced (``offer`` returns True: the caller counts it as dropped); there is no
  backlog, so the outputs are never older than one forward pass.
- The thread takes one batch: the waiting frame of every camera, as soon as each camera has
  one, or ``batch_wait_s`` after the oldest of them arrived, whichever comes first. A camera
  that stopped sending does not stall the others; with one camera a frame is taken at once.
- ``process(batch)`` is the owner's and should count what it loses itself. Anything that
  escapes it ends the thread with its reason in ``error`` (and ``on_fatal`` told); the owner
  sees ``alive`` False and calls ``restart()``, as the node does from its diagnostics timer.
"""
import dataclasses
import threading
import time
import traceback
from typing import Any, Callable, List, Optional


@dataclasses.dataclass(frozen=True)
class Pending:
    """One frame handed to the worker: its camera's index, the frame, and when it came."""

    camera: int
    frame: Any
    arrived: float


class FrameWorker:
    """One slot per camera and the thread that empties them (see the module doc)."""

    def __init__(self, process: Callable[[List[Pending]], None], *, cameras: int = 1,
                 batch_wait_s: float = 0.05,
                 on_fatal: Optional[Callable[[str, str], None]] = None,
                 clock: Callable[[], float] = time.monotonic, name: str = 'anomseg_worker'):
        if cameras < 1:
            raise ValueError('a worker needs at least one camera')
        self.process, self.cameras, self.batch_wait_s = process, cameras, float(batch_wait_s)
        self.on_fatal, self.clock, self.name = on_fatal, clock, name
        self._cond = threading.Condition()
        self._slots: List[Optional[Pending]] = [None] * cameras
        self._in_work_since: Optional[float] = None
        self._running = False
        self._thread: Optional[threading.Thread] = None
        self.error = ''
        self.restarts = 0

    # -- the owner's side ----------------------------------------------------------------------
    def offer(self, camera: int, frame) -> bool:
        """Put ``frame`` in ``camera``'s slot; True when it replaced a frame that waited."""
        with self._cond:
            replaced = self._slots[camera] is not None
            self._slots[camera] = Pending(camera, frame, self.clock())
            self._cond.notify()
        return replaced

    def start(self) -> None:
        with self._cond:
            self._running = True
        self.error = ''
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def restart(self) -> None:
        """Start the thread again after it stopped on an error (counted in ``restarts``)."""
        self.restarts += 1
        self.start()

    def stop(self, grace_s: float = 5.0) -> None:
        """Take no more frames, forget the waiting ones, and wait at most ``grace_s`` for the
        batch in the network."""
        with self._cond:
            self._running = False
            self._slots = [None] * self.cameras
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=grace_s)

    @property
    def running(self) -> bool:
        """Started and not stopped (the thread itself may have died: see ``alive``)."""
        return self._running

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pending_since(self) -> Optional[float]:
        """When the oldest frame that waits for, or is in, the network arrived; None if none."""
        with self._cond:
            times = [p.arrived for p in self._slots if p is not None]
            if self._in_work_since is not None:
                times.append(self._in_work_since)
        return min(times) if times else None

    # -- the thread ----------------------------------------------------------------------------
    def _take(self) -> Optional[List[Pending]]:
        """The next batch (see the module doc), or None once stopped."""
        with self._cond:
            while True:
                if not self._running:
                    return None
                waiting = [p for p in self._slots if p is not None]
                if len(waiting) == self.cameras:
                    break
                if waiting:
                    remaining = min(p.arrived for p in waiting) + self.batch_wait_s - \
                        self.clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                else:
                    self._cond.wait()
            self._slots = [None] * self.cameras
            self._in_work_since = min(p.arrived for p in waiting)
            return waiting

    def _run(self) -> None:
        try:
            while True:
                batch = self._take()
                if batch is None:
                    return
                try:
                    self.process(batch)
                finally:
                    self._in_work_since = None
        except BaseException as exc:  # noqa: B902 - said by the owner (alive False), restarted
            self.error = f'{type(exc).__name__}: {exc}'
            if self.on_fatal is not None:
                self.on_fatal(self.error, traceback.format_exc())
