from odoo import models


class AccountMoveLine(models.Model):
    _inherit = "account.move.line"

    def reconcile(self):
        """Override of `account` to queue the withdrawal of the Vipps requests of
        invoices now paid by other means (bank transfer, cash, a credit note).

        Nothing is sent from here: bank reconciliation never waits on Vipps.
        """
        result = super().reconcile()
        paid = self.move_id.filtered(
            lambda move: move.move_type == "out_invoice"
            and move.payment_state in ("paid", "in_payment", "reversed")
        )
        if paid:
            paid._vipps_withdraw_requests()
        return result
