"""Odoo 19.0's payment engine, connected to the addon's `_vipps_*` methods.

19.0 processes payment data with `_process`: the transaction is found by
`_search_by_reference`, its amount checked with `_extract_amount_data`, and it is
updated in `_apply_updates`. Every capture, void and refund is a child transaction,
created by `_capture`, `_void` and `_refund`, which then call `_send_capture_request`,
`_send_void_request` and `_send_refund_request` on the child, without arguments.

The engine marks the child errored when Vipps refuses (a `ValidationError`, which
`VippsError` is), and the accountant who asked sees it so. Two errors pass through
the engine unchanged instead:
- a request Vipps did not answer is no refusal: the child stays unconfirmed, to be
  sent again with the same key or confirmed by a later read;
- when Odoo settles a payment itself (`_vipps_settle`), which notes a refusal on the
  invoice and ends a reservation Vipps no longer holds.
"""

from odoo import api, models

from ..exceptions import VippsError


class _Passing(Exception):  # noqa: N818 - carries a VippsError past the engine
    """A Vipps error on its way through `_capture`/`_void`, see above."""

    def __init__(self, error):
        super().__init__(*error.args)
        self.error = error


class PaymentTransaction(models.Model):
    _inherit = "payment.transaction"

    @api.model
    def _compute_reference(self, provider_code, prefix=None, separator="-", **kwargs):
        """Override of `payment`: a reference Vipps accepts. 19.0 no longer tells
        `_compute_reference_prefix` the provider: the prefix is computed here."""
        if provider_code == "vipps" and not prefix:
            prefix = self._vipps_reference_prefix(
                self.sudo()._compute_reference_prefix(separator, **kwargs), kwargs
            )
        return super()._compute_reference(
            provider_code, prefix=prefix, separator=separator, **kwargs
        )

    def _vipps_process(self, payment):
        """Give the payment as Vipps has it to Odoo's payment engine."""
        return self._process("vipps", payment)

    @api.model
    def _search_by_reference(self, provider_code, payment_data):
        """Override of `payment`: the payment, not one of its captures or refunds."""
        if provider_code != "vipps":
            return super()._search_by_reference(provider_code, payment_data)
        return self._vipps_find(self._extract_reference(provider_code, payment_data))

    def _extract_amount_data(self, payment_data):
        """Override of `payment`: the amount Vipps has for the payment.

        Captures, releases and refunds are booked from the aggregate instead, see
        `_vipps_apply_updates`.
        """
        if self.provider_code != "vipps":
            return super()._extract_amount_data(payment_data)
        amount = payment_data.get("amount") or {}
        return {
            "amount": self._vipps_major(int(amount.get("value") or 0)),
            "currency_code": amount.get("currency"),
        }

    def _apply_updates(self, payment_data):
        """Override of `payment` to follow the payment as Vipps reports it."""
        res = super()._apply_updates(payment_data)
        if self.provider_code == "vipps":
            self._vipps_apply_updates(payment_data)
        return res

    def _vipps_capture(self, amount=None):
        """Capture `amount` (all when None) through the engine."""
        return self._capture(amount_to_capture=amount)

    def _vipps_void(self, amount=None):
        """Release `amount` (all when None) through the engine."""
        return self._void(amount_to_void=amount)

    def _capture(self, amount_to_capture=None):
        """Override of `payment` to let the errors above pass."""
        return self._vipps_unwrap(super()._capture, amount_to_capture=amount_to_capture)

    def _void(self, amount_to_void=None):
        """Override of `payment` to let the errors above pass."""
        return self._vipps_unwrap(super()._void, amount_to_void=amount_to_void)

    def _refund(self, amount_to_refund=None):
        """Override of `payment` to let the errors above pass."""
        return self._vipps_unwrap(super()._refund, amount_to_refund=amount_to_refund)

    @api.model
    def _vipps_unwrap(self, operation, **kwargs):
        try:
            return operation(**kwargs)
        except _Passing as passing:
            raise passing.error from None

    def _send_capture_request(self):
        """Override of `payment` to capture at Vipps what this child stands for."""
        res = super()._send_capture_request()
        if self.provider_code == "vipps":
            source = self.source_transaction_id
            self._vipps_through_engine(
                source._vipps_request_capture, self, self._vipps_minor(self.amount)
            )
        return res

    def _send_void_request(self):
        """Override of `payment` to release at Vipps what this child stands for."""
        res = super()._send_void_request()
        if self.provider_code == "vipps":
            source = self.source_transaction_id
            self._vipps_through_engine(source._vipps_request_release, self)
        return res

    def _send_refund_request(self):
        """Override of `payment` to refund at Vipps what this child stands for."""
        res = super()._send_refund_request()
        if self.provider_code == "vipps":
            source = self.source_transaction_id
            self._vipps_through_engine(source._vipps_request_refund, self)
        return res

    @api.model
    def _vipps_through_engine(self, request, *args):
        try:
            request(*args)
        except VippsError as error:
            if error.transient or self.env.context.get("vipps_settling"):
                raise _Passing(error) from error
            raise
