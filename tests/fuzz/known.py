"""Known open bugs, in one place, so that the fuzzer stays green until each is fixed.

``DISABLED``: generator features switched off (see ``program.FEATURES``), each with the
issue and bug number it waits for. ``KNOWN``: failures that the generator cannot avoid
(they come from what a backend makes of ordinary programs), matched by check, backend
and a regular expression over the message; a matching failure is reported as known and
does not fail the CI test. Remove an entry once its fix has landed, and run
``python -m tests.fuzz --seconds 300`` to see that the fuzzer stays green without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Known:
    bug: str                    # where it is tracked: "issue 14 bug 10: ..."
    check: str                  # the Failure's check
    backends: tuple[str, ...]   # the Failure's backend, one of these
    pattern: str                # a regular expression the Failure's message matches
    feature: str | None = None  # only in programs that use this feature (program.FEATURES)

    def matches(self, check: str, backend: str, message: str, features: set[str]) -> bool:
        return (check == self.check and backend in self.backends
                and (self.feature is None or self.feature in features)
                and re.search(self.pattern, message) is not None)


DISABLED: dict[str, str] = {}

KNOWN: list[Known] = []


def known_bug(check: str, backend: str, message: str, features: set[str]) -> str | None:
    """The bug a failure of a program with these features is known as, or None."""
    for k in KNOWN:
        if k.matches(check, backend, message, features):
            return k.bug
    return None
