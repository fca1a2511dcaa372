from odoo import models


class AccountMoveLine(models.Model):
    _inherit = "account.move.line"

    def reconcile(self):
        """Override of `account` to withdraw the Vipps requests of invoices that are
        now paid by other means (bank transfer, cash, a credit note)."""
        result = super().reconcile()
        paid = self.move_id.filtered(
            lambda move: move.move_type == "out_invoice"
            and move.payment_state in ("paid", "in_payment", "reversed")
        )
        if paid:
            paid._vipps_withdraw_open_requests()
        return result
