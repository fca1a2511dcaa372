from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import float_compare

from .. import compat

EXCEPTIONS = [
    ("unknown_payment", "Payment unknown to Odoo"),
    ("unknown_refund", "Refund Odoo did not record"),
    ("amount_differs", "Amount differs from Odoo"),
    ("unknown_type", "Entry Odoo does not book"),
    ("opening", "Balance from before the first date read"),
    ("changed", "Changed after booking"),
]


class PaymentVippsSettlementLine(models.Model):
    """One entry of a Vipps MobilePay settlement ledger (the Report API's funds
    ledger): a capture, a refund, the fees retained, a payout, or anything else
    Vipps puts there. Read once per ledger date; kept as Vipps last showed it."""

    _name = "payment.vipps.settlement.line"
    _description = "Vipps MobilePay Settlement Entry"
    _order = "ledger_date, id"
    _rec_name = "psp_reference"

    provider_id = fields.Many2one(
        "payment.provider", required=True, readonly=True, ondelete="cascade"
    )
    company_id = fields.Many2one(related="provider_id.company_id", store=True)
    payout_id = fields.Many2one(
        "payment.vipps.payout",
        readonly=True,
        ondelete="set null",
        index="btree_not_null",
    )
    ledger_date = fields.Date(required=True, readonly=True, index=True)
    entry_time = fields.Datetime(string="Time", readonly=True)
    entry_type = fields.Char(string="Type", required=True, readonly=True)
    psp_reference = fields.Char(string="PSP Reference", required=True, readonly=True)
    reference = fields.Char(readonly=True, index="btree_not_null")
    currency_id = fields.Many2one("res.currency", required=True, readonly=True)
    amount = fields.Monetary(readonly=True)
    fee_amount = fields.Monetary(string="Fee", readonly=True)
    transaction_id = fields.Many2one(
        "payment.transaction", readonly=True, index="btree_not_null"
    )
    payment_id = fields.Many2one(related="transaction_id.payment_id")
    partner_id = fields.Many2one(related="transaction_id.partner_id")
    exception = fields.Selection(selection=EXCEPTIONS, readonly=True)
    note = fields.Char(readonly=True)

    _entry_unique = compat.Constraint(
        "unique(provider_id, psp_reference, entry_type)",
        "A ledger entry is read once per sales unit.",
    )

    def _vipps_kind(self):
        """capture, refund, fees, payout or other."""
        self.ensure_one()
        return {
            "capture": "capture",
            "refund": "refund",
            "fees-retained": "fees",
            "payout-scheduled": "payout",
        }.get(self.entry_type, "other")

    def _vipps_differs(self, values):
        """Whether Vipps now shows this entry with another amount or reference."""
        self.ensure_one()
        return bool(
            self.currency_id.compare_amounts(self.amount, values["amount"])
            or (self.reference or False) != values["reference"]
        )

    def _vipps_note(self, note):
        """Note what Vipps now shows; False when it was noted already."""
        self.ensure_one()
        if self.note == note:
            return False
        self.note = note
        return True

    def _vipps_find_transaction(self, source, used):
        """The Odoo transaction this capture or refund is, among those of payment
        ``source`` not in ``used``: ``(transaction, exception)``."""
        self.ensure_one()
        if not source:
            return source, "unknown_payment"
        kind = self._vipps_kind()
        candidates = source._vipps_settled_by(kind).filtered(
            lambda tx: tx.id not in used
        )
        amount = abs(self.amount)
        rounding = self.currency_id.rounding
        match = candidates.filtered(
            lambda tx: not float_compare(
                abs(tx.amount), amount, precision_rounding=rounding
            )
        )[:1]
        if match:
            return match, False
        if kind == "refund" and not candidates:
            return match, "unknown_refund"
        return match, "amount_differs"


class PaymentVippsPayout(models.Model):
    """One Vipps MobilePay payout: the money of the ledger dates since the previous
    payout, less Vipps's fees, sent to the bank in one transfer.

    Booked as one journal entry in the Vipps journal: the captures and refunds it
    settles leave the accounts the payments were booked on (and are reconciled with
    them), the fees go to the fee account, the net to the transfer account where the
    bank statement line of the payout finds it."""

    _name = "payment.vipps.payout"
    _description = "Vipps MobilePay Payout"
    _inherit = ["mail.thread"]
    _order = "ledger_date desc, id desc"

    name = fields.Char(required=True, readonly=True)
    provider_id = fields.Many2one(
        "payment.provider", required=True, readonly=True, ondelete="restrict"
    )
    company_id = fields.Many2one(related="provider_id.company_id", store=True)
    journal_id = fields.Many2one(related="provider_id.journal_id")
    currency_id = fields.Many2one("res.currency", required=True, readonly=True)
    ledger_id = fields.Char(readonly=True)
    ledger_date = fields.Date(required=True, readonly=True)
    payout_reference = fields.Char(required=True, readonly=True)
    amount = fields.Monetary(string="Paid Out", readonly=True)
    line_ids = fields.One2many(
        "payment.vipps.settlement.line", "payout_id", string="Entries", readonly=True
    )
    captured_amount = fields.Monetary(
        string="Captured", compute="_compute_amounts", store=True
    )
    refunded_amount = fields.Monetary(
        string="Refunded", compute="_compute_amounts", store=True
    )
    fee_amount = fields.Monetary(string="Fees", compute="_compute_amounts", store=True)
    other_amount = fields.Monetary(
        string="Other", compute="_compute_amounts", store=True
    )
    exception_count = fields.Integer(compute="_compute_amounts", store=True)
    state = fields.Selection(
        selection=[("review", "To Review"), ("booked", "Booked")],
        default="review",
        required=True,
        readonly=True,
        tracking=True,
    )
    move_id = fields.Many2one("account.move", string="Journal Entry", readonly=True)
    move_line_ids = fields.One2many(
        related="move_id.line_ids", string="Journal Items", readonly=True
    )
    changed = fields.Boolean(
        string="Changed at Vipps",
        readonly=True,
        help="Vipps MobilePay showed other entries for these ledger dates after the "
        "payout was booked. The entry was not changed: compare it with the report.",
    )

    _payout_unique = compat.Constraint(
        "unique(provider_id, payout_reference)",
        "A payout is recorded once.",
    )

    @api.depends("line_ids.amount", "line_ids.entry_type", "line_ids.exception")
    def _compute_amounts(self):
        for payout in self:
            sums = {"capture": 0.0, "refund": 0.0, "fees": 0.0, "other": 0.0}
            for line in payout.line_ids:
                kind = line._vipps_kind()
                if kind in sums:
                    sums[kind] += line.amount
            payout.captured_amount = sums["capture"]
            payout.refunded_amount = -sums["refund"]
            payout.fee_amount = -sums["fees"]
            payout.other_amount = sums["other"]
            payout.exception_count = len(payout.line_ids.filtered("exception"))

    # === ACTIONS === #

    def action_book(self):
        """Book a payout held for review: its exceptions go to the journal's
        suspense account, to be cleared by hand. Accounting managers only."""
        self._vipps_check_booking_rights()
        for payout in self.sudo().filtered(lambda p: p.state == "review"):
            payout._vipps_book(force=True)

    @api.model
    def _vipps_check_booking_rights(self):
        if not self.env.user.has_group("account.group_account_manager"):
            raise AccessError(
                self.env._("Only accounting managers can read and book payouts.")
            )

    def action_view_move(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "account.move",
            "res_id": self.move_id.id,
            "views": [(False, "form")],
        }

    def action_view_unsettled(self):
        """The Vipps payments of this sales unit that no payout settled yet."""
        self.ensure_one()
        return self.provider_id.action_vipps_view_unsettled()

    # === BUSINESS METHODS - MATCHING === #

    def _vipps_match(self):
        """Link each capture and refund to the Odoo transaction it is, and mark
        what Odoo does not know as an exception."""
        self.ensure_one()
        Transaction = self.env["payment.transaction"]
        lines = self.line_ids.filtered(lambda line: line.exception != "changed")
        references = set(lines.filtered("reference").mapped("reference"))
        sources = Transaction.search(
            [
                ("provider_id", "=", self.provider_id.id),
                ("reference", "in", list(references)),
                ("source_transaction_id", "=", False),
            ]
        )
        by_reference = {tx.reference: tx for tx in sources}
        taken = self.env["payment.vipps.settlement.line"].search(
            [
                ("transaction_id", "!=", False),
                ("provider_id", "=", self.provider_id.id),
                ("id", "not in", lines.ids),
            ]
        )
        used = set(taken.transaction_id.ids)
        for line in lines:
            values = {"transaction_id": False, "exception": False, "note": False}
            kind = line._vipps_kind()
            if line.exception == "opening":
                values["exception"] = "opening"
            elif kind == "other":
                values["exception"] = "unknown_type"
            elif kind in ("capture", "refund"):
                tx, values["exception"] = line._vipps_find_transaction(
                    by_reference.get(line.reference, Transaction), used
                )
                values["transaction_id"] = tx.id
                used.add(tx.id)
            line.write(values)

    # === BUSINESS METHODS - BOOKING === #

    def _vipps_book(self, force=False):
        """Write the payout's journal entry and reconcile it with the payments.

        Without ``force`` a payout with exceptions is left for review. The fees,
        the net and the settled payments must add up to what Vipps paid out, to the
        øre; otherwise nothing is booked.
        """
        self.ensure_one()
        if self.state == "booked":
            return
        provider = self.provider_id
        provider._vipps_check_settlement_config()
        if self.exception_count and not force:
            return
        currency = self.currency_id
        payout_lines = self.line_ids.filtered(lambda ml: ml._vipps_kind() == "payout")
        total = sum((self.line_ids - payout_lines).mapped("amount"))
        if currency.compare_amounts(total, self.amount):
            raise UserError(
                self.env._(
                    "Payout %(payout)s does not add up: its entries come to "
                    "%(total)s, Vipps MobilePay paid out %(amount)s. Nothing was "
                    "booked.",
                    payout=self.name,
                    total=total,
                    amount=self.amount,
                )
            )
        journal = provider.journal_id
        suspense = (
            journal.suspense_account_id
            or self.company_id.account_journal_suspense_account_id
        )
        line_values = []
        to_reconcile = []
        for line in self.line_ids:
            kind = line._vipps_kind()
            if kind in ("payout", "fees"):
                continue
            if line.exception or not line.transaction_id:
                if not suspense:
                    raise UserError(
                        self.env._(
                            "Set a suspense account on journal %s to book entries "
                            "Odoo does not know.",
                            journal.display_name,
                        )
                    )
                line_values.append(
                    self._vipps_line(
                        suspense,
                        line.amount,
                        self.env._(
                            "Vipps %(type)s %(psp)s (to review)",
                            type=line.entry_type,
                            psp=line.psp_reference,
                        ),
                    )
                )
                continue
            account, partner, open_lines = line.transaction_id._vipps_booked_on()
            label = self.env._(
                "Vipps %(type)s %(reference)s",
                type=line.entry_type,
                reference=line.transaction_id.reference,
            )
            line_values.append(
                self._vipps_line(account, line.amount, label, partner=partner)
            )
            to_reconcile.append((label, open_lines))
        if not currency.is_zero(self.fee_amount):
            line_values += self._vipps_fee_lines(self.fee_amount)
        line_values.append(
            self._vipps_line(
                provider.vipps_transfer_account_id,
                -self.amount,
                self.env._("Vipps payout %s", self.payout_reference),
            )
        )
        move = self.env["account.move"].create(
            {
                "move_type": "entry",
                "journal_id": journal.id,
                "date": self.ledger_date,
                "ref": self.name,
                "line_ids": [fields.Command.create(v) for v in line_values],
            }
        )
        move.action_post()
        # One reconciliation plan for all the pairs: Odoo settles them in one go
        # (about 15 times faster than one reconcile() per payment).
        ours = {line.name: line for line in move.line_ids}
        plan = [
            ours[label] | open_lines for label, open_lines in to_reconcile if open_lines
        ]
        if plan:
            self.env["account.move.line"]._reconcile_plan(plan)
        self.write({"move_id": move.id, "state": "booked"})

    def _vipps_line(self, account, amount, label, partner=None):
        """Move line values for ``amount`` of the payout currency taken off
        ``account`` (a capture credits it, a refund debits it)."""
        company = self.company_id
        balance = self.currency_id._convert(
            -amount, company.currency_id, company, self.ledger_date
        )
        return {
            "account_id": account.id,
            "partner_id": partner.id if partner else False,
            "name": label,
            "currency_id": self.currency_id.id,
            "amount_currency": -amount,
            "balance": balance,
        }

    def _vipps_fee_lines(self, fees):
        """The fee expense (and its tax, if the sales unit has one set)."""
        provider = self.provider_id
        label = self.env._("Vipps MobilePay fees %s", self.payout_reference)
        tax = provider.vipps_fee_tax_id
        if not tax:
            return [self._vipps_line(provider.vipps_fee_account_id, -fees, label)]
        taxes = tax.with_context(force_price_include=True).compute_all(
            fees, currency=self.currency_id
        )
        lines = [
            dict(
                self._vipps_line(
                    provider.vipps_fee_account_id, -taxes["total_excluded"], label
                ),
                tax_ids=[fields.Command.set(tax.ids)],
                tax_tag_ids=[fields.Command.set(taxes["base_tags"])],
            )
        ]
        for tax_values in taxes["taxes"]:
            lines.append(
                dict(
                    self._vipps_line(
                        self.env["account.account"].browse(tax_values["account_id"])
                        or provider.vipps_fee_account_id,
                        -tax_values["amount"],
                        tax_values["name"],
                    ),
                    tax_repartition_line_id=tax_values["tax_repartition_line_id"],
                    tax_tag_ids=[fields.Command.set(tax_values["tag_ids"])],
                )
            )
        return lines
