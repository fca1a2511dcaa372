from odoo import api, models
from odoo.exceptions import UserError, ValidationError


class AccountMoveSend(models.AbstractModel):
    _inherit = "account.move.send"

    # === SENDING METHODS === #

    @api.model
    def _is_applicable_to_company(self, method, company):
        """Override of `account` to offer Vipps where a Vipps provider is set up."""
        if method != "vipps":
            return super()._is_applicable_to_company(method, company)
        return bool(self.env["payment.provider"]._vipps_find(company))

    @api.model
    def _is_applicable_to_move(self, method, move, **move_data):
        """Override of `account`: Vipps for customer invoices with an amount due."""
        if method != "vipps":
            return super()._is_applicable_to_move(method, move, **move_data)
        return move.vipps_can_request

    def _hook_if_success(self, moves_data, **kwargs):
        """Override of `account` to send the Vipps requests of the sent invoices.

        An invoice Vipps refuses gets a note in its chatter; the others are sent.
        """
        result = super()._hook_if_success(moves_data, **kwargs)
        for move, move_data in moves_data.items():
            if "vipps" not in move_data["sending_methods"]:
                continue
            if not self._is_applicable_to_move("vipps", move, **move_data):
                continue
            try:
                move._vipps_request_payment()
            except (UserError, ValidationError) as error:
                move._vipps_note_not_sent(error)
        return result
