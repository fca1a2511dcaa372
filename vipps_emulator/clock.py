"""A controllable clock for the emulator.

By default the clock follows real (UTC) time. Tests can move it forward with
``advance()`` or pin it to a moment with ``set_time()``; payment expiry, token
expiry and event timestamps all read this clock, so a test can expire a
10-minute payment without waiting 10 minutes.
"""

import datetime as dt
import re
import threading

UTC = dt.timezone.utc

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"([Zz]|[+-](?:2[0-3]|[01]\d):[0-5]\d)$"
)


def utcnow():
    """Return the real current time as an aware UTC datetime."""
    return dt.datetime.now(UTC)


class Clock:
    """Real time plus an adjustable offset, optionally frozen at one instant."""

    def __init__(self):
        self._lock = threading.Lock()
        self._offset = dt.timedelta(0)
        self._frozen_at = None

    def now(self):
        """Return the emulated current time (aware, UTC)."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return utcnow() + self._offset

    def timestamp(self):
        """Return the emulated current time as POSIX seconds."""
        return self.now().timestamp()

    @property
    def frozen(self):
        """True when the clock is pinned with ``set_time(..., frozen=True)``."""
        return self._frozen_at is not None

    def advance(self, seconds):
        """Move the clock forward (or backward, if negative) by ``seconds``."""
        delta = dt.timedelta(seconds=float(seconds))
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += delta
            else:
                self._offset += delta

    def set_time(self, when, frozen=True):
        """Jump to ``when`` (a datetime; naive values are taken as UTC).

        With ``frozen=True`` (the default) the clock stays at that instant until
        it is advanced; with ``frozen=False`` it keeps running from there.
        """
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        when = when.astimezone(UTC)
        with self._lock:
            if frozen:
                self._frozen_at = when
                self._offset = dt.timedelta(0)
            else:
                self._frozen_at = None
                self._offset = when - utcnow()

    def reset(self):
        """Return to real time."""
        with self._lock:
            self._frozen_at = None
            self._offset = dt.timedelta(0)


def isoformat(when):
    """Format a datetime the way Vipps does: UTC, milliseconds, trailing ``Z``."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_rfc3339(value):
    """Parse an RFC 3339 timestamp (``Z`` or ``+hh:mm`` offset) to aware UTC.

    Raise ``ValueError`` when the text is not a valid timestamp.
    """
    match = _RFC3339.match(value)
    if not match:
        raise ValueError("not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or ".0")[1:7].ljust(6, "0"))
    if offset in ("Z", "z"):
        tz = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    when = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
    )
    return when.astimezone(UTC)
