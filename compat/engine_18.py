"""Odoo 18.0's payment engine, connected to the addon's `_vipps_*` methods.

18.0 processes payment data with `_handle_notification_data`, finds the transaction
with `_get_tx_from_notification_data` and updates it in `_process_notification_data`.
A full capture or void is asked on the transaction itself; only partial ones are
child transactions.
"""

from odoo import api, models


class PaymentTransaction(models.Model):
    _inherit = "payment.transaction"

    @api.model
    def _compute_reference_prefix(self, provider_code, separator, **values):
        """Override of `payment`: a reference Vipps accepts."""
        prefix = super()._compute_reference_prefix(provider_code, separator, **values)
        if provider_code != "vipps":
            return prefix
        return self._vipps_reference_prefix(prefix, values)

    def _vipps_process(self, payment):
        """Give the payment as Vipps has it to Odoo's payment engine."""
        return self._handle_notification_data("vipps", payment)

    def _get_tx_from_notification_data(self, provider_code, notification_data):
        """Override of `payment` to find the transaction by its Vipps reference."""
        tx = super()._get_tx_from_notification_data(provider_code, notification_data)
        if provider_code != "vipps" or len(tx) == 1:
            return tx
        return self._vipps_find(notification_data.get("reference"))

    def _process_notification_data(self, notification_data):
        """Override of `payment` to follow the payment as Vipps reports it."""
        res = super()._process_notification_data(notification_data)
        if self.provider_code == "vipps":
            self._vipps_apply_updates(notification_data)
        return res

    def _vipps_capture(self, amount=None):
        """Capture `amount` (all when None) through the engine."""
        return self._send_capture_request(amount_to_capture=amount)

    def _vipps_void(self, amount=None):
        """Release `amount` (all when None) through the engine."""
        return self._send_void_request(amount_to_void=amount)

    def _send_capture_request(self, amount_to_capture=None):
        """Override of `payment` to capture the payment at Vipps."""
        child_capture_tx = super()._send_capture_request(
            amount_to_capture=amount_to_capture
        )
        if self.provider_code == "vipps":
            value = self._vipps_minor(amount_to_capture or self.amount)
            self._vipps_request_capture(child_capture_tx, value)
        return child_capture_tx

    def _send_void_request(self, amount_to_void=None):
        """Override of `payment` to release the reserved amount at Vipps."""
        child_void_tx = super()._send_void_request(amount_to_void=amount_to_void)
        if self.provider_code == "vipps":
            self._vipps_request_release(child_void_tx)
        return child_void_tx

    def _send_refund_request(self, amount_to_refund=None):
        """Override of `payment` to refund at Vipps."""
        refund_tx = super()._send_refund_request(amount_to_refund=amount_to_refund)
        if self.provider_code == "vipps":
            self._vipps_request_refund(refund_tx)
        return refund_tx
