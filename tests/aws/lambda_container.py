"""A Lambda container for the reliability suite: one process, invocations one at a time.

Configured like a deployed worker function by ``IHUB_*`` environment
variables. It builds the hub (the cold start), prints ``ready``, then reads
one SQS event per line on stdin, runs ``aws_lambda.worker_handler`` on it and
prints the response as one JSON line. The runtime in ``lambda_runtime.py``
kills (SIGKILL) or freezes (SIGSTOP) it to play a crashed or stalled function.
"""

from __future__ import annotations

import json
import sys

from integration_hub.entrypoints import aws_lambda


def main() -> None:
    """Serve invocations until stdin closes."""
    aws_lambda._hub("lambda-worker")  # the cold start, before the first event
    print("ready", flush=True)
    for line in sys.stdin:
        response = aws_lambda.worker_handler(json.loads(line), None)
        print(json.dumps(response), flush=True)


if __name__ == "__main__":
    main()
