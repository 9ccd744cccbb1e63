"""The detector node's process: every SIGINT or SIGTERM ends it with exit code 0, no traceback,
within ``EXIT_DEADLINE_S`` of the signal, whatever it is doing (importing, loading or
converting the model, idle, streaming, in the middle of a slow frame, shutting down).

- The signals are taken over before anything heavy is imported, and rclpy is told to leave
  them alone: its own handlers shut the context down under a node still being built
  (``RCLError: ... context is invalid``).
- Start-up (imports, the model, an OpenVINO conversion) runs in a thread of its own while the
  main thread waits in short steps, so a signal is answered at once: "interrupted during
  start-up", exit 0.
- Running, the main thread spins the node in steps of ``SPIN_STEP_S`` until a signal. Then the
  worker gets ``WORKER_GRACE_S`` to finish its frame, rclpy is shut down (which flushes the
  ROS log), the streams are flushed, and the process ends without the interpreter's teardown
  of torch and OpenVINO, which takes seconds and, with a forward still running in C++ on the
  worker, aborts (``terminate called without an active exception``).
- A second signal, or the deadline passing, ends the process at once, with code 0.

This module imports neither rclpy nor torch at its top: ``anomseg_ros.detector`` is the
entry point of ``ros2 run`` and ``python -m``.
"""
import os
import signal
import sys
import threading
import traceback

EXIT_DEADLINE_S = 1.5
WORKER_GRACE_S = 0.5
SPIN_STEP_S = 0.1
NAME = 'anomseg_detector'


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: B902 - a closed or broken stream: nothing left to flush
            pass


def _exit(code: int, message: str = '') -> None:
    """End the process now, with ``code``, after printing ``message`` and flushing."""
    if message:
        try:
            print(message, file=sys.stderr)
        except Exception:  # noqa: B902 - a closed stderr must not change the exit code
            pass
    _flush()
    os._exit(code)


class _Signals:
    """SIGINT / SIGTERM handling: the first sets ``stop`` and starts the deadline, a second
    one ends the process."""

    def __init__(self):
        self.stop = threading.Event()
        self.name = ''

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        if self.stop.is_set():
            _exit(0, f'{NAME}: second {signal.Signals(signum).name}: exiting now')
        self.name = signal.Signals(signum).name
        self.stop.set()
        deadline = threading.Timer(EXIT_DEADLINE_S, _exit, args=(
            0, f'{NAME}: still shutting down {EXIT_DEADLINE_S:g} s after {self.name}: '
               f'exiting now'))
        deadline.daemon = True
        deadline.start()


def _start_in_thread(args, signals: _Signals, managed: bool = False):
    """The node built by ``detector_node.start_node`` in a thread; ``(node, None)``, or
    ``(None, exit code)`` when start-up failed. A signal meanwhile ends the process."""
    result = {}
    ready = threading.Event()

    def start():
        try:
            from anomseg_ros.ros.detector_node import start_node
            result['node'] = start_node(args, managed=managed)
        except SystemExit as exc:
            result['code'] = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: B902 - a bug: said in full, and a non-zero exit
            traceback.print_exc()
            result['code'] = 1
        finally:
            ready.set()

    threading.Thread(target=start, name='anomseg_start', daemon=True).start()
    while not ready.wait(SPIN_STEP_S):
        if signals.stop.is_set():
            _exit(0, f'{NAME}: interrupted during start-up ({signals.name})')
    return result.get('node'), result.get('code', 0)


def main(args=None, *, managed: bool = False) -> None:
    """Run the detector node until SIGINT / SIGTERM (``ros2 run anomseg_ros detector``;
    ``managed``: the lifecycle node, ``ros2 run anomseg_ros managed_detector``)."""
    signals = _Signals()
    signals.install()
    node, code = _start_in_thread(args, signals, managed)
    if node is None:
        _exit(code)
    code = node.spin_until(signals.stop, step_s=SPIN_STEP_S)
    node.close(worker_grace_s=WORKER_GRACE_S)
    _exit(code)
