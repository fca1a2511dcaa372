"""Errors raised by the Vipps MobilePay client (`_vipps_make_request`)."""

from odoo.exceptions import ValidationError

# Vipps error codes that mean "try again shortly with the same key": an operation
# in progress on the payment (6160, 6250), a capture that failed at Vipps (6280).
TRANSIENT_CODES = ("6160", "6250", "6280")


class VippsError(ValidationError):
    """Vipps refused a call or could not be reached; the message is for the user.

    Subclasses ValidationError, which Odoo's payment engine expects from providers.

    :param str message: the translated message shown to the user
    :param dict problem: what Vipps said (see `utils.parse_problem`), when it answered
    """

    def __init__(self, message, problem=None):
        super().__init__(message)
        self.problem = problem or {}

    @property
    def status(self):
        return self.problem.get("status")

    @property
    def code(self):
        return self.problem.get("code")

    @property
    def transient(self):
        """Whether trying again later may succeed (Vipps busy, down or unreachable,
        or a capture Vipps asks to try again with the same key)."""
        return (
            self.status in (423, 429)
            or (self.status or 0) >= 500
            or self.code in TRANSIENT_CODES
        )


class VippsUnreachableError(VippsError):
    """No answer from Vipps (connection error or timeout) even after retries.

    A write may or may not have been carried out: read the payment back to know.
    """

    transient = True


class VippsBusyError(VippsError):
    """Another Odoo worker is processing a payment this one depends on: try later."""

    transient = True
