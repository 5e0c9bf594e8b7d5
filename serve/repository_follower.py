"""Keep the embedded server's python-backend mirror in step with the repository, in explicit mode.

With `--model-control-mode=explicit` Triton loads only when asked (`prodgen deploy` asks
through the repository API), and it loads from the mirror, not from the repository that
`prodgen deploy` writes. A background thread mirrors the repository every interval, so a
version or config published there is in the mirror shortly before the load request comes;
a deploy that is faster than the follower retries the load until the version appears.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

_log = logging.getLogger(__name__)


class RepositoryFollower:
    def __init__(self, sync: Callable[[], object], interval_s: float) -> None:
        self._sync = sync
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prodgen-mirror-follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._sync()
            except OSError as error:  # a folder renamed under us mid-walk: the next round sees the result
                _log.warning("mirroring the repository failed, retrying: %s", error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
