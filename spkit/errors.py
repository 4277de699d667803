"""One exception type for problems the user can fix (bad path, corrupt file, missing data).

The CLI prints these as a single line and exits with code 2; library callers can catch them.
Messages should name the file or value at fault and the fix.
"""

from __future__ import annotations


class SpkitError(Exception):
    """A user-facing error with a one-line, actionable message."""
