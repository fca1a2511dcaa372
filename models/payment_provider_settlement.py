import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError

from .. import compat, const, utils
from ..exceptions import VippsError
from .payment_transaction import _to_major

_logger = logging.getLogger(__name__)


class PaymentProvider(models.Model):
    """Settlements: reading Vipps MobilePay's Report API and booking each payout."""

    _inherit = "payment.provider"

    vipps_settlement_enabled = fields.Boolean(
        string="Book Payouts",
        help="Read the sales unit's settlement ledger from Vipps MobilePay every day "
        "and book each payout as one journal entry: the payments it settles, the "
        "fees, and the amount sent to the bank.",
        copy=False,
    )
    vipps_fee_account_id = fields.Many2one(
        "account.account",
        string="Fee Account",
        help="The expense account of the fees Vipps MobilePay keeps from each payout.",
        check_company=True,
        domain=compat.OPEN_ACCOUNT
        + "[('account_type', 'in', ('expense', 'expense_direct_cost'))]",
        copy=False,
    )
    vipps_fee_tax_id = fields.Many2one(
        "account.tax",
        string="Fee Tax",
        help="Only when the fees carry a tax you deduct; the fee is taken as "
        "including it.",
        check_company=True,
        domain="[('type_tax_use', '=', 'purchase')]",
        copy=False,
    )
    vipps_transfer_account_id = fields.Many2one(
        "account.account",
        string="Payout Account",
        help="Where the net amount of each payout waits for the bank statement line "
        "of the transfer (a liquidity transfer account).",
        check_company=True,
        domain=compat.OPEN_ACCOUNT + "[('reconcile', '=', True)]",
        copy=False,
    )
    vipps_settlement_start = fields.Date(
        string="Settlements From",
        help="The first ledger date to read. Payouts before it are not booked.",
        copy=False,
    )
    vipps_settled_until = fields.Date(
        string="Ledger Read Until",
        readonly=True,
        copy=False,
        help="The last ledger date Vipps MobilePay has closed and Odoo has read.",
    )
    vipps_ledger_id = fields.Char(string="Ledger", readonly=True, copy=False)
    vipps_settlement_error = fields.Char(
        string="Last Settlement Problem", readonly=True, copy=False
    )
    vipps_payout_count = fields.Integer(compute="_compute_vipps_payout_count")

    def _compute_vipps_payout_count(self):
        counts = dict(
            self.env["payment.vipps.payout"]._read_group(
                [("provider_id", "in", self.ids)], ["provider_id"], ["__count"]
            )
        )
        for provider in self:
            provider.vipps_payout_count = counts.get(provider, 0)

    # === ACTIONS === #

    def action_vipps_read_settlements(self):
        """Read the ledger now (the daily job does the same): accounting managers.

        The entries and payouts are read-only for everyone, so the reading runs as
        the superuser once the user's right to book is checked.
        """
        self.ensure_one()
        self.env["payment.vipps.payout"]._vipps_check_booking_rights()
        created = self.sudo()._vipps_read_settlements()
        self.vipps_settlement_error = False
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "message": self.env._(
                    "Ledger read until %(date)s: %(count)s new payouts.",
                    date=self.vipps_settled_until or "-",
                    count=len(created),
                ),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def action_vipps_view_payouts(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "payment_vipps.action_payment_vipps_payout"
        )
        action["domain"] = [("provider_id", "=", self.id)]
        return action

    def action_vipps_view_unsettled(self):
        """The payments and refunds of this sales unit no payout settled yet."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Not Yet Settled"),
            "res_model": "payment.transaction",
            "views": [(False, "list"), (False, "form")],
            "domain": [
                ("provider_id", "=", self.id),
                ("state", "=", "done"),
                ("payment_id", "!=", False),
                ("vipps_settlement_line_ids", "=", False),
            ],
        }

    # === BUSINESS METHODS === #

    @api.model
    def _cron_vipps_read_settlements(self):
        """Daily: read each sales unit's ledger since the last date read."""
        providers = self.sudo().search(
            [
                ("code", "=", "vipps"),
                ("state", "in", ("test", "enabled")),
                ("vipps_settlement_enabled", "=", True),
            ]
        )
        for provider in providers:
            try:
                provider._vipps_read_settlements()
                provider.vipps_settlement_error = False
            except (VippsError, UserError) as error:
                # Each date has a savepoint of its own: those read before the
                # problem stay, nothing of its own date does; the next run goes on.
                _logger.warning("Vipps settlements of %s: %s", provider.name, error)
                provider.vipps_settlement_error = str(error.args[0])[:500]

    def _vipps_check_settlement_config(self):
        """Raise, before anything is read or booked, what the booking needs."""
        self.ensure_one()
        missing = [
            self._fields[name].get_description(self.env)["string"]
            for name in (
                "journal_id",
                "vipps_fee_account_id",
                "vipps_transfer_account_id",
            )
            if not self[name]
        ]
        if missing:
            raise UserError(
                self.env._(
                    "To book Vipps MobilePay payouts, fill in on payment provider "
                    "%(provider)s: %(fields)s.",
                    provider=self.name,
                    fields=", ".join(missing),
                )
            )

    def _vipps_read_settlements(self):
        """Read the ledger dates since the last one read and book their payouts.

        Each date is read whole (every page of funds and fees) and stored in a
        savepoint of its own, so a failure leaves the dates before it read and
        nothing half-done. Reading stops at the first date Vipps has not closed (or
        has not published); the last dates read are read again, so that a change
        Vipps made to them is seen.

        :return: the payouts created
        :rtype: recordset of `payment.vipps.payout`
        """
        self.ensure_one()
        self._vipps_check_settlement_config()
        ledger = self._vipps_settlement_ledger()
        if self.vipps_settled_until:
            day = self.vipps_settled_until - timedelta(
                days=const.SETTLEMENT_REREAD_DAYS - 1
            )
            day = max(day, self.vipps_settlement_start or day)
        else:
            day = self.vipps_settlement_start or self._vipps_default_settlement_start()
        payouts = self.env["payment.vipps.payout"]
        for __ in range(const.SETTLEMENT_MAX_DATES):
            funds = self._vipps_fetch_report(ledger, "funds", day)
            if funds is None:
                break
            fees = self._vipps_fetch_report(ledger, "fees", day)
            if fees is None:
                break
            with self.env.cr.savepoint():
                payouts |= self._vipps_store_ledger_date(ledger, day, funds, fees)
            if not self.vipps_settled_until or day > self.vipps_settled_until:
                self.vipps_settled_until = day
            day += timedelta(days=1)
        return payouts

    def _vipps_default_settlement_start(self):
        first = self.env["payment.transaction"].search(
            [("provider_id", "=", self.id)], order="create_date", limit=1
        )
        return (first.create_date or fields.Datetime.now()).date()

    def _vipps_settlement_ledger(self):
        """The id of the ledger that settles this sales unit (asked once)."""
        if self.vipps_ledger_id:
            return self.vipps_ledger_id
        handle = f"api:{self.vipps_merchant_serial_number}"
        cursor = None
        while True:
            endpoint = "/settlement/v1/ledgers?settlesForRecipientHandles=" + handle
            if cursor:
                endpoint = f"/settlement/v1/ledgers?cursor={cursor}"
            answer = self._vipps_make_request(endpoint, method="GET")
            for ledger in answer.get("items") or []:
                if handle in (ledger.get("settlesForRecipientHandles") or []):
                    self.vipps_ledger_id = ledger["ledgerId"]
                    return self.vipps_ledger_id
            cursor = answer.get("cursor")
            if not cursor:
                raise UserError(
                    self.env._(
                        "Vipps MobilePay shows no settlement ledger for sales unit "
                        "%s to these API keys. The Report API serves production "
                        "keys only.",
                        self.vipps_merchant_serial_number,
                    )
                )

    def _vipps_fetch_report(self, ledger, topic, day):
        """Every entry of one ledger date, or None while Vipps has not closed it."""
        endpoint = f"/report/v2/ledgers/{ledger}/{topic}/dates/{day.isoformat()}"
        items, cursor = [], None
        while True:
            try:
                answer = self._vipps_make_request(
                    endpoint + (f"?cursor={cursor}" if cursor else ""), method="GET"
                )
            except VippsError as error:
                if error.status == 404:
                    return None  # not published yet: try again later
                raise
            if answer.get("tryLater"):
                return None
            items += answer.get("items") or []
            cursor = answer.get("cursor")
            if not (answer.get("hasMore") and cursor):
                return items

    def _vipps_store_ledger_date(self, ledger, day, funds, fees):
        """Keep one ledger date as Vipps shows it now; create and book its payout.

        An entry already booked that Vipps now shows otherwise (or no longer shows),
        and a new entry on a date already booked, are never booked again: the
        payout is marked changed, with what differs, for the accountant.

        :return: the payout created, if the date has one
        """
        currency = self._vipps_ledger_currency(funds + fees)
        existing = self.env["payment.vipps.settlement.line"].search(
            [("provider_id", "=", self.id), ("ledger_date", "=", day)]
        )
        booked = existing.payout_id.filtered(lambda p: p.state == "booked")[:1]
        self._vipps_store_opening(day, funds, currency)
        changes = self._vipps_store_entries(
            day, funds, fees, currency, existing, booked
        )
        if booked and changes:
            booked.changed = True
            booked.message_post(
                body=self.env._(
                    "Vipps MobilePay changed ledger date %(date)s after this payout "
                    "was booked: %(changes)s. Nothing was booked again; check the "
                    "report and correct the entry by hand.",
                    date=day,
                    changes="; ".join(changes),
                )
            )
        return self._vipps_create_payouts(ledger, day, funds, currency)

    def _vipps_store_opening(self, day, funds, currency):
        """On the first date read, what the ledger held before it: an exception,
        since Odoo cannot tell which payments it was."""
        Line = self.env["payment.vipps.settlement.line"]
        if not funds or Line.search_count([("provider_id", "=", self.id)], limit=1):
            return
        opening = funds[0].get("balanceBefore") or 0
        if opening:
            Line.create(
                {
                    "provider_id": self.id,
                    "ledger_date": day,
                    "entry_type": "opening-balance",
                    "psp_reference": f"opening-{day.isoformat()}",
                    "currency_id": currency.id,
                    "amount": _major(currency, opening),
                    "exception": "opening",
                }
            )

    def _vipps_store_entries(self, day, funds, fees, currency, existing, booked):
        """Create, update or drop the entries of one date; return the changes to
        entries already booked (which are left as they were). A new entry of a date
        whose payout is ``booked`` joins that payout as a change."""
        Line = self.env["payment.vipps.settlement.line"]
        by_key = {(line.psp_reference, line.entry_type): line for line in existing}
        fee_by_psp = {
            item.get("pspReference"): item.get("amount") or 0
            for item in fees
            if item.get("entryType") == "capture-fee"
        }
        changes = []
        for item in funds:
            key = (str(item.get("pspReference")), str(item.get("entryType")))
            values = {
                "amount": _major(currency, item.get("amount") or 0),
                "reference": item.get("reference") or False,
                "fee_amount": _major(currency, fee_by_psp.get(key[0], 0)),
            }
            line = by_key.pop(key, None)
            if line is None:
                line = Line.create(
                    {
                        **values,
                        "provider_id": self.id,
                        "ledger_date": day,
                        "psp_reference": key[0],
                        "entry_type": key[1],
                        "entry_time": utils.parse_rfc3339(item.get("time")) or False,
                        "currency_id": currency.id,
                    }
                )
                if booked:
                    line.write({"exception": "changed", "payout_id": booked.id})
                    changes.append(
                        self.env._(
                            "new entry %(type)s %(psp)s of %(amount)s",
                            type=key[1],
                            psp=key[0],
                            amount=values["amount"],
                        )
                    )
            elif line._vipps_differs(values):
                if line.payout_id.state != "booked":
                    line.write(values)
                elif line._vipps_note(
                    self.env._("Vipps now shows %(amount)s", amount=values["amount"])
                ):
                    changes.append(
                        self.env._(
                            "%(type)s %(psp)s changed from %(old)s to %(new)s",
                            type=key[1],
                            psp=key[0],
                            old=line.amount,
                            new=values["amount"],
                        )
                    )
            elif currency.compare_amounts(line.fee_amount, values["fee_amount"]):
                line.fee_amount = values["fee_amount"]
        for (psp, entry_type), line in by_key.items():
            if line.exception == "opening":
                continue
            if line.payout_id.state != "booked":
                line.unlink()
            elif line._vipps_note(self.env._("No longer shown by Vipps")):
                changes.append(
                    self.env._(
                        "%(type)s %(psp)s no longer shown", type=entry_type, psp=psp
                    )
                )
        return changes

    def _vipps_create_payouts(self, ledger, day, funds, currency):
        """A payout for each payout entry of the date not seen before, with the
        entries since the previous payout; booked when Odoo knows them all."""
        Line = self.env["payment.vipps.settlement.line"]
        Payout = self.env["payment.vipps.payout"]
        created = Payout
        for item in funds:
            if item.get("entryType") != "payout-scheduled":
                continue
            reference = str(item.get("pspReference"))
            if Payout.search_count(
                [("provider_id", "=", self.id), ("payout_reference", "=", reference)]
            ):
                continue
            payout = Payout.create(
                {
                    "name": self.env._(
                        "Vipps %(date)s %(reference)s",
                        date=day.isoformat(),
                        reference=reference,
                    ),
                    "provider_id": self.id,
                    "currency_id": currency.id,
                    "ledger_id": ledger,
                    "ledger_date": day,
                    "payout_reference": reference,
                    "amount": -_major(currency, item.get("amount") or 0),
                }
            )
            Line.search(
                [
                    ("provider_id", "=", self.id),
                    ("payout_id", "=", False),
                    ("ledger_date", "<=", day),
                    ("exception", "!=", "changed"),
                ]
            ).payout_id = payout
            payout._vipps_match()
            try:
                with self.env.cr.savepoint():
                    payout._vipps_book()
            except UserError as error:
                payout.message_post(body=error.args[0])
            created |= payout
        return created

    def _vipps_ledger_currency(self, items):
        names = {item.get("currency") for item in items if item.get("currency")}
        if not names:
            return self.vipps_currency_id or self.company_id.currency_id
        currency = (
            self.env["res.currency"]
            .with_context(active_test=False)
            .search([("name", "in", list(names))])
        )
        if len(names) != 1 or not currency:
            raise UserError(
                self.env._(
                    "The settlement ledger of %(provider)s shows currencies "
                    "%(currencies)s that Odoo cannot book.",
                    provider=self.name,
                    currencies=", ".join(sorted(names)),
                )
            )
        return currency


class PaymentTransaction(models.Model):
    _inherit = "payment.transaction"

    vipps_settlement_line_ids = fields.One2many(
        "payment.vipps.settlement.line", "transaction_id", readonly=True
    )
    vipps_payout_id = fields.Many2one(
        "payment.vipps.payout",
        compute="_compute_vipps_payout_id",
    )

    @api.depends(
        "vipps_settlement_line_ids.payout_id",
        "child_transaction_ids.vipps_settlement_line_ids.payout_id",
    )
    def _compute_vipps_payout_id(self):
        """The payout that settled the payment: its own, or its capture's when the
        capture is a child transaction (always on 19.0)."""
        for tx in self:
            captures = tx.child_transaction_ids.filtered(
                lambda child: child._vipps_kind() == "capture"
            )
            lines = tx.vipps_settlement_line_ids | captures.vipps_settlement_line_ids
            tx.vipps_payout_id = lines.payout_id[:1]

    def _vipps_settled_by(self, kind):
        """The transactions of this payment that a ledger entry of ``kind``
        (capture or refund) can be: confirmed, with a registered payment."""
        self.ensure_one()
        txs = self.child_transaction_ids.filtered(lambda tx: tx._vipps_kind() == kind)
        if not txs and kind == "capture":
            txs = self  # captured in full: the transaction itself
        return txs.filtered(lambda tx: tx.state == "done" and tx.payment_id)

    def _vipps_booked_on(self):
        """Where this transaction's payment put the money, for the payout to take it
        off: ``(account, partner, open lines to reconcile with)``.

        A payment with a journal entry waits on its outstanding account; one without
        (no outstanding account on the payment method) left the invoice open on the
        receivable, and the payout settles that.
        """
        self.ensure_one()
        payment = self.payment_id
        if payment.move_id:
            liquidity, __, __ = payment._seek_for_lines()
            open_lines = liquidity.filtered(lambda ml: not ml.reconciled)
            return liquidity.account_id[:1], payment.partner_id, open_lines
        account = payment.destination_account_id
        # A capture's transaction has no invoices of its own: its payment's.
        invoices = (
            payment.invoice_ids
            or self.invoice_ids
            or self.source_transaction_id.invoice_ids
        )
        open_lines = invoices.line_ids.filtered(
            lambda ml: ml.account_id == account and not ml.reconciled
        )
        return account, payment.partner_id.commercial_partner_id, open_lines


def _major(currency, value):
    return currency.round(_to_major(currency, value))
