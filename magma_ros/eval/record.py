"""``magma-ros record``: record topics into a new bag until a duration passes or Ctrl-C."""
from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Sequence, TextIO

from .bag import check_output_bag
from .recorder import BagRecorder, TopicSpec, resolve_names, resolve_types, wait_for_publishers
from .ros_session import ros_session


def record(out: Path, topics: Sequence[TopicSpec], *, storage: str = "mcap", duration_s: float | None = None,
           discovery_timeout_s: float = 10.0, ros_args: Sequence[str] = (), log: TextIO | None = None) -> Counter[str]:
    """Record ``topics`` to ``out`` (relative names in the namespace of ``ros_args``); returns the
    message count per topic."""
    log = log or sys.stderr
    check_output_bag(out)
    with ros_session("magma_record", ros_args) as session:
        specs = resolve_types(session.node, resolve_names(session.node, list(topics)), discovery_timeout_s)
        # the clock starts once the publishers are known: their QoS is matched and nothing is missed
        silent = wait_for_publishers(session.node, [s.name for s in specs], discovery_timeout_s, session.stop)
        if silent and not session.stop.is_set():
            print(f"no publisher on {', '.join(silent)} after {discovery_timeout_s:g} s: recorded from when one "
                  "appears", file=log, flush=True)
        recorder = BagRecorder(session.node, out, storage, specs, on_error=session.stop)
        print(f"recording {', '.join(s.name for s in specs)} to {out} "
              f"({'for %g s' % duration_s if duration_s else 'until Ctrl-C'})", file=log, flush=True)
        started = time.monotonic()
        try:
            session.wait(duration_s)
        finally:
            recorder.close()
        print(f"recorded {sum(recorder.counts.values())} messages in {time.monotonic() - started:.1f} s: "
              f"{recorder.summary()}", file=log, flush=True)
        return recorder.counts
