"""Fault injection for API calls.

A fault applies to the next ``count`` calls of one operation (or ``"*"`` for
any operation). It can add latency, answer with an error status (a problem
JSON body, optionally with a Vipps error code), hold the connection open and
then close it without an answer (``timeout``), or close it at once
(``disconnect``). With ``processed=True`` the call is carried out first, and
only the answer is replaced or lost: the "did my capture go through?" case.
"""

import dataclasses
import threading

from .errors import ApiError

OPERATIONS = (
    "accessToken",
    "createPayment",
    "getPayment",
    "getPaymentEventLog",
    "capturePayment",
    "cancelPayment",
    "refundPayment",
    "forceApprove",
    "registerWebhook",
    "listWebhooks",
    "deleteWebhook",
    "putCategory",
    "postReceipt",
    "getOrder",
    "postImage",
    "getUserinfo",
    "getLedgers",
    "getReportByDate",
    "getReportFeed",
)
ANY = "*"


@dataclasses.dataclass
class Fault:
    """One pending fault rule."""

    operation: str
    count: int = 1
    status: int = None
    code: int = None
    timeout: bool = False
    disconnect: bool = False
    latency: float = 0.0
    processed: bool = False
    hang_seconds: float = None

    def __post_init__(self):
        if self.operation != ANY and self.operation not in OPERATIONS:
            raise ValueError(
                f"unknown operation {self.operation!r}; one of {', '.join(OPERATIONS)}"
            )
        if int(self.count) < 1:
            raise ValueError("count must be at least 1")
        self.count = int(self.count)
        self.latency = float(self.latency or 0.0)
        if self.status is not None and not 400 <= int(self.status) <= 599:
            raise ValueError("status must be 400 to 599")
        if self.status is None and self.code is not None:
            raise ValueError("code needs a status")
        if not (self.status or self.timeout or self.disconnect or self.latency):
            raise ValueError("give status, timeout, disconnect or latency")

    def error(self):
        """Return the ApiError to answer with, for a status fault."""
        headers = {"Retry-After": "1"} if self.status == 429 else {}
        return ApiError(
            int(self.status),
            detail="Injected by the emulator.",
            code=self.code,
            headers=headers,
        )

    def to_dict(self):
        """Return the rule as JSON."""
        return dataclasses.asdict(self)


class Faults:
    """The pending fault rules, consumed in the order they were added."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []

    def add(self, fault):
        """Add a rule."""
        with self._lock:
            self._rules.append(fault)
        return fault

    def take(self, operation):
        """Consume and return the first rule matching ``operation``, or None."""
        with self._lock:
            for rule in self._rules:
                if rule.operation in (operation, ANY):
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                    return dataclasses.replace(rule, count=1)
        return None

    def list(self):
        """Return the pending rules as JSON."""
        with self._lock:
            return [rule.to_dict() for rule in self._rules]

    def clear(self):
        """Remove every pending rule."""
        with self._lock:
            self._rules.clear()
