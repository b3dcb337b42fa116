"""SIGTERM and SIGINT as a request to stop at the next safe point, for the long jobs.

A compiled step (a training batch, an attack's run over a batch) cannot be cut in the middle, so
a signal only sets a flag; the job checks it between steps, keeps what it finished (a checkpoint,
finished evaluation cells) and raises `errors.Interrupted` naming how to continue. Python runs
its signal handlers only between bytecodes, so a thread watching a wakeup pipe hears each signal
at once: it says what will happen, and with `second_stops_now` a second SIGINT (Ctrl-C twice)
ends the process at once: what was written atomically before stays, only the running step is
lost.
"""
import os
import signal
import sys
import threading


class StopFlag:
    """Within the block, SIGTERM/SIGINT set `signal` (the first one received) instead of
    stopping the process; `on_signal(signum)` hears each, e.g. to say what will happen."""

    def __init__(self, on_signal=None, second_stops_now=False):
        self.signal = None
        self._previous = {}
        self._on_signal = on_signal
        self._second_stops_now = second_stops_now

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        self._watch = None
        if self._previous and (self._on_signal is not None or self._second_stops_now):
            self._watch = _Watcher(self._on_signal, self._second_stops_now)
        return self

    def _handle(self, signum, frame):
        # Python runs this only between bytecodes: after a compiled step returns. What must be
        # heard at once (the message, a second Ctrl-C) is the watcher's
        if self.signal is None:
            self.signal = signum

    def __exit__(self, *exc):
        if self._watch is not None:
            self._watch.close()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Watcher:
    """Hears signals the moment they arrive, even while the main thread is inside a compiled
    step (where Python handlers wait): the C-level handler writes each signal's number to a
    pipe (`signal.set_wakeup_fd`), read by a thread that calls `on_signal(signum)` and, on a
    second SIGINT, ends the process with exit code 130."""

    def __init__(self, on_signal, second_stops_now):
        self.on_signal, self.second_stops_now = on_signal, second_stops_now
        self.read, write = os.pipe()
        os.set_blocking(write, False)
        self.write = write
        self.previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        self.interrupts = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = os.read(self.read, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum == 0:  # close() wakes the thread with a zero byte
                    return
                self.interrupts += signum == signal.SIGINT
                if self.second_stops_now and self.interrupts >= 2:
                    sys.stderr.write("Error: stopped at once by a second Ctrl-C (what was "
                                     "finished before stays)\n")
                    sys.stderr.flush()
                    os._exit(130)
                if self.on_signal is not None:
                    self.on_signal(signum)

    def close(self):
        signal.set_wakeup_fd(self.previous_fd)
        try:
            os.write(self.write, b"\0")
        except OSError:
            pass
        self.thread.join(timeout=5)
        for fd in (self.read, self.write):
            try:
                os.close(fd)
            except OSError:
                pass
