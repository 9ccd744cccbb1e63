"""The detector node's health as a diagnostics level: counters since start-up for the record, and
a sliding window for the level, so one bad frame warns for a while and not forever (ROS-free).

- ERROR when the worker thread is not alive, when a frame has been waiting for the network
  for more than ``stale_s`` (stale: given by the node as ``pending_since``, the arrival of
  the oldest frame taken and not yet finished), or when every frame of the window failed;
- WARN when frames were rejected, failed or scored non-finite within the window;
- OK otherwise ("running", or "waiting for images" when none came in the window).
"""
import collections
import threading
import time
from typing import Callable, Deque, Dict, Optional, Tuple

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
COUNTERS = ('received', 'processed', 'skipped', 'dropped', 'rejected', 'failed', 'nonfinite')
PROBLEMS = ('rejected', 'failed', 'nonfinite')


class FrameHealth:
    """Thread-safe frame counters and the level they give."""

    def __init__(self, *, window_s: float = 10.0, stale_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.window_s, self.stale_s, self.clock = float(window_s), float(stale_s), clock
        self.counts = collections.Counter({name: 0 for name in COUNTERS})
        self._events: Deque[Tuple[float, str]] = collections.deque()  # within the window
        self._lock = threading.Lock()

    def count(self, name: str) -> None:
        now = self.clock()
        with self._lock:
            self.counts[name] += 1
            self._events.append((now, name))

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def recent(self) -> Dict[str, int]:
        """Counts of the last ``window_s`` seconds."""
        now = self.clock()
        with self._lock:
            while self._events and self._events[0][0] < now - self.window_s:
                self._events.popleft()
            return collections.Counter(name for _, name in self._events)

    def level(self, *, worker_alive: bool = True, worker_error: str = '',
              pending_since: Optional[float] = None) -> Tuple[int, str]:
        """The diagnostics level and message; ``pending_since`` is when the oldest frame that
        waits for (or is in) the network arrived, None when none does. A camera that sends a
        frame every 8 s is not stale: each is answered soon after it comes."""
        now = self.clock()
        recent = self.recent()
        window = f'in the last {self.window_s:g} s'
        if not worker_alive:
            return ERROR, f'worker thread stopped ({worker_error or "no reason given"})'
        if pending_since is not None and now - pending_since > self.stale_s:
            return ERROR, (f'stale: a frame has waited {now - pending_since:.1f} s for its '
                           f'outputs (stale_timeout {self.stale_s:g} s)')
        if recent['failed'] and not recent['processed']:
            return ERROR, f'every frame failed {window} ({recent["failed"]} failed)'
        problems = [f'{recent[name]} {name}' for name in PROBLEMS if recent[name]]
        if problems:
            return WARN, f'{", ".join(problems)} {window}'
        if not recent['received']:
            return OK, 'waiting for images'
        return OK, 'running'
