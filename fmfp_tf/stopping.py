"""SIGTERM and SIGINT as a request to stop at the next safe point, for the long jobs.

A compiled step (a training batch, an attack's run over a batch) cannot be cut in the middle, so
a signal only sets a flag; the job checks it between steps, keeps what it finished (a checkpoint,
finished evaluation cells) and raises `errors.Interrupted` naming how to continue. With
`second_stops_now`, a second SIGINT (Ctrl-C twice) ends the process at once instead: what was
written atomically before stays, only the running step is lost.
"""
import signal


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
        return self

    def _handle(self, signum, frame):
        first = self.signal is None
        if first:
            self.signal = signum
        if self._on_signal is not None:
            self._on_signal(signum)
        if self._second_stops_now and not first and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.raise_signal(signal.SIGINT)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
