"""A governance queue worker in a process of its own: one delivery of one message, as the
`govern_queue` function makes it (crash tests kill this process with SIGKILL mid-action).

    python -m tests.govern_worker '<message body>' <now, ISO 8601> <dequeue count>

Settings come from the environment, as in the functions host. Prints the record's status.
"""

from __future__ import annotations

import sys
from datetime import datetime

from shared import services
from shared.governance.queue_runner import process_message


def main(argv: list[str]) -> int:
    body, now, dequeue_count = argv[0], datetime.fromisoformat(argv[1]), int(argv[2])
    svc = services.get_services()
    record = process_message(
        svc.governance,
        body.encode(),
        dequeue_count=dequeue_count,
        max_dequeue_count=svc.settings.max_dequeue_count,
        queue_name=svc.settings.govern_queue,
        now=now,
    )
    print(record.status if record else "requeued")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
