"""Named stage boundaries where the tests inject a failure, to prove that rerunning the same
command finishes the work with the same result (the fault-injection tests in tests/test_resume.py).

`reached(stage)` does nothing unless $CIFAR_XAI_FAULT names that stage: then it raises
`InjectedFault`, or with $CIFAR_XAI_FAULT_MODE=kill ends the process at once with SIGKILL, as
`kill -9` or a power cut would (no clean-up, no `finally`).
"""

from __future__ import annotations

import os
import signal


class InjectedFault(RuntimeError):
    """A failure a test asked for at a stage boundary."""


def reached(stage: str) -> None:
    if os.environ.get("CIFAR_XAI_FAULT") != stage:
        return
    if os.environ.get("CIFAR_XAI_FAULT_MODE") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"injected failure at {stage}")
