"""Start one runner agent process for the end-to-end tests (logging on, short timings).

python -m tests.runner_agent.agent_main URL TOKEN WORKDIR NAME [LABELS] [GRACE]
"""

from __future__ import annotations

import logging
import sys

from conveyor.runner.agent import run_agent
from conveyor.runner.loop import run_event_loop


def main(argv: list[str]) -> int:
    url, token, workdir, name = argv[:4]
    labels = [label for label in (argv[4] if len(argv) > 4 else "").split(",") if label]
    grace = float(argv[5]) if len(argv) > 5 else 60.0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    return run_event_loop(run_agent(url, token, labels, workdir=workdir, name=name, grace=grace))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
