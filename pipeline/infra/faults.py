"""Named fault points for the kill-and-resume harness (``scripts/chaos.py``, ``make chaos``).

Set ``PIPELINE_KILL_AT`` to a point name and the process SIGKILLs itself when it reaches
that point: exactly what ``kill -9`` does, at a chosen moment. Points: ``<stage>:start``
(a stage begins building), ``<stage>:publish`` (its files and manifest are written, not
yet renamed into place), ``<stage>:step:<n>`` (sft or train has saved its checkpoint after
step n) and ``plot:start``; ``<point>#k`` means its k-th occurrence in the process (a
sweep runs many jobs). Unset, every point is a no-op. The harness that drives these
points lives apart from the library; only the points themselves are here.
"""

from __future__ import annotations

import os
import signal

ENV = "PIPELINE_KILL_AT"

_seen: dict[str, int] = {}


def point(name: str) -> None:
    """Kill this process if ``PIPELINE_KILL_AT`` names this point: ``name`` for its
    first occurrence, ``name#k`` for its k-th (e.g. ``train:start#2``, the second
    training run of a sweep)."""
    target = os.environ.get(ENV)
    if not target or not target.startswith(name):
        return
    _seen[name] = _seen.get(name, 0) + 1
    if target in (name if _seen[name] == 1 else None, f"{name}#{_seen[name]}"):
        os.kill(os.getpid(), signal.SIGKILL)
