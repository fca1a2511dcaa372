import logging
from datetime import timedelta

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from .. import compat, const
from ..exceptions import VippsBusyError, VippsError

_logger = logging.getLogger(__name__)


class PaymentVippsOutbox(models.Model):
    """Vipps work deferred out of the transaction that asked for it.

    Requests sent in bulk or automatically, withdrawals of requests whose invoice was
    paid, cancelled or reset elsewhere, refunds of credit notes, re-sends of expired
    requests, webhooks that could not be followed at once, and a record of every
    create (so that a payment whose Odoo side was lost is found). Accounting methods
    only add rows; the job takes them with row locks that skip what another worker
    holds, each in a transaction of its own, and retries failures with backoff.
    """

    _name = "payment.vipps.outbox"
    _description = "Vipps MobilePay Outbox"
    _order = "id desc"
    _rec_name = "operation"

    operation = fields.Selection(
        selection=[
            ("request", "Send payment request"),
            ("resend", "Re-send expired request"),
            ("sync", "Check payment"),
            ("refund", "Refund"),
            ("phone", "Learn shared phone number"),
        ],
        required=True,
        readonly=True,
    )
    state = fields.Selection(
        selection=[("pending", "To Do"), ("done", "Done"), ("failed", "Failed")],
        default="pending",
        required=True,
        readonly=True,
        index=True,
    )
    provider_id = fields.Many2one(
        "payment.provider", required=True, readonly=True, ondelete="cascade"
    )
    company_id = fields.Many2one(related="provider_id.company_id")
    move_id = fields.Many2one(
        "account.move", string="Invoice", readonly=True, ondelete="cascade", index=True
    )
    transaction_id = fields.Many2one(
        "payment.transaction",
        readonly=True,
        ondelete="cascade",
        index="btree_not_null",
    )
    reference = fields.Char(
        string="Vipps Reference",
        readonly=True,
        index="btree_not_null",
        help="A payment to look up at Vipps: one Odoo created, or one a webhook "
        "named.",
    )
    values = fields.Json(readonly=True, help="What was asked: phone, amount, expiry.")
    user_id = fields.Many2one("res.users", string="Asked By", readonly=True)
    attempts = fields.Integer(readonly=True)
    next_attempt_at = fields.Datetime(
        string="Next Attempt", required=True, readonly=True, default=fields.Datetime.now
    )
    last_error = fields.Text(string="Reason", readonly=True)
    noted = fields.Boolean(
        readonly=True, help="Technical: the failure is noted on the invoice."
    )

    _target = compat.Constraint(
        "CHECK(move_id IS NOT NULL OR transaction_id IS NOT NULL "
        "OR reference IS NOT NULL)",
        "An outbox row is about an invoice, a transaction or a reference.",
    )

    # === ACTION METHODS === #

    def action_retry(self):
        """Try the selected rows again now."""
        self.write(
            {
                "state": "pending",
                "next_attempt_at": fields.Datetime.now(),
                "noted": False,
            }
        )
        self._vipps_trigger(fields.Datetime.now())
        return True

    # === BUSINESS METHODS - ENQUEUEING === #

    @api.model
    def _vipps_enqueue(
        self,
        operation,
        provider=None,
        move=None,
        transaction=None,
        reference=None,
        values=None,
        delay=0,
    ):
        """Add work for the job (or bring forward the same work already waiting).

        :param int delay: seconds before it is due
        """
        outbox = self.sudo()
        due = fields.Datetime.now() + timedelta(seconds=delay)
        if operation != "request":
            domain = [("operation", "=", operation), ("state", "=", "pending")]
            if transaction:
                domain.append(("transaction_id", "=", transaction.id))
            elif reference:
                domain.append(("reference", "=", reference))
            if move:
                domain.append(("move_id", "=", move.id))
            waiting = outbox.search(domain, limit=1)
            if waiting:
                if waiting.next_attempt_at > due:
                    waiting.next_attempt_at = due
                    self._vipps_trigger(due)
                return waiting
        if not provider and transaction:
            provider = transaction.provider_id
        if not provider:
            provider = self.env["payment.provider"]._vipps_find(move.company_id)
        row = outbox.create(
            {
                "operation": operation,
                "provider_id": provider.id,
                "move_id": move and move.id,
                "transaction_id": transaction and transaction.id,
                "reference": reference,
                "values": values,
                "user_id": self.env.uid,
                "next_attempt_at": due,
            }
        )
        self._vipps_trigger(due)
        return row

    @api.model
    def _vipps_trigger(self, due):
        """Wake the job once per transaction for work due now; later work waits for
        its next scheduled run (every minute)."""
        if due > fields.Datetime.now() + timedelta(seconds=1):
            return
        data = self.env.cr.precommit.data
        if data.get("vipps_outbox_triggered"):
            return
        data["vipps_outbox_triggered"] = True
        cron = self.env.ref("payment_vipps.cron_process_outbox").sudo()
        self.env.cr.precommit.add(cron._trigger)

    @api.model
    def _vipps_record_intent(self, tx):
        """Record a Vipps write about to be sent, committed at once in a transaction
        of its own: if the Odoo side of the write is lost (a crash before the
        commit), this row still names the payment, and the job reads it later.

        :param tx: a transaction being created at Vipps (named by its reference:
            Odoo may lose it), or a committed one whose payment is about to change
            (a refund)
        """
        when = fields.Datetime.now() + timedelta(
            minutes=const.CREATE_CHECK_DELAY_MINUTES
        )
        committed = tx.vipps_state and tx.id
        # Not the invoice: the caller may hold its row locked (Send & Print does), and
        # the foreign key check would wait for it, from a cursor the caller waits
        # for; an invoice created in the caller's transaction does not exist yet for
        # this one. The reference (or the transaction) names the payment.
        with self.env.registry.cursor() as cr:
            cr.execute(
                """
                INSERT INTO payment_vipps_outbox
                    (operation, state, provider_id, transaction_id,
                     reference, attempts, next_attempt_at, user_id, create_uid,
                     create_date, write_uid, write_date)
                VALUES ('sync', 'pending', %s, %s, %s, 0, %s, %s, %s,
                        NOW() AT TIME ZONE 'UTC', %s, NOW() AT TIME ZONE 'UTC')
                """,
                [
                    tx.provider_id.id,
                    committed or None,
                    None if committed else tx.reference,
                    when,
                    self.env.uid,
                    self.env.uid,
                    self.env.uid,
                ],
            )

    # === BUSINESS METHODS - PROCESSING === #

    @api.model
    def _cron_process(self, limit=const.OUTBOX_BATCH_SIZE):
        """Do the work that is due, one row per transaction, until none is left or
        `limit` rows are done; another worker running the job takes other rows."""
        self._vipps_close_confirmed_creates()
        done = 0
        while done < limit and self._vipps_isolated(_process_next_row):
            done += 1
        # Counted in a transaction of its own: this one does not see the rows the
        # loop committed.
        remaining = done and self._vipps_isolated(
            lambda env: env["payment.vipps.outbox"].search_count(
                env["payment.vipps.outbox"]._vipps_due_domain()
            )
        )
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)

    @api.model
    def _vipps_due_domain(self):
        return [
            ("state", "=", "pending"),
            ("next_attempt_at", "<=", fields.Datetime.now()),
        ]

    @api.model
    def _vipps_close_confirmed_creates(self):
        """Close, in one statement, the records of creates that Vipps confirmed and
        Odoo committed: nothing is left to check for them."""
        self.env.cr.execute(
            """
            UPDATE payment_vipps_outbox o
               SET state = 'done', write_date = NOW() AT TIME ZONE 'UTC'
              FROM payment_transaction t
             WHERE o.state = 'pending'
               AND o.operation = 'sync'
               AND o.transaction_id IS NULL
               AND t.reference = o.reference
               AND t.vipps_state IS NOT NULL
            """
        )

    @api.model
    def _vipps_isolated(self, function):
        """Run `function(env)` in a transaction of its own, committed on success and
        rolled back (and logged) on failure: one item never undoes another.

        :return: what the function returned, or None when it failed
        """
        self.env.flush_all()
        try:
            with self.env.registry.cursor() as cr:
                env = self.env(cr=cr)
                try:
                    return function(env)
                except Exception:
                    _logger.exception("Vipps: background item failed")
                    cr.rollback()
                    return None
        finally:
            # What the item committed is not in this transaction's cache.
            self.env.invalidate_all()

    def _vipps_run(self):
        """Do the work of one row.

        :return: False when a step is done and the next is due at once (committed in
            between), else None: the row is done
        :raise: a transient VippsError or a PostgreSQL concurrency error to try
            again later, UserError/ValidationError when it cannot be done (the row
            fails with the reason)
        """
        self.ensure_one()
        if self.operation in ("request", "resend"):
            invoice = self.move_id
            if self.user_id:
                invoice = invoice.with_user(self.user_id)
            if self.operation == "resend":
                invoice._vipps_resend_expired(self.transaction_id)
            else:
                invoice._vipps_send_queued(self.values or {})
        elif self.operation == "refund":
            return self._vipps_run_refund()
        elif self.operation == "phone":
            self._vipps_run_learn_phone()
        elif self.transaction_id:
            self._vipps_run_sync(
                self.transaction_id.with_context(vipps_raise_transient=True)
            )
        else:
            self._vipps_run_check_reference()

    def _vipps_run_sync(self, tx):
        """Follow a payment; done once nothing about it waits on Vipps any more."""
        if not tx._vipps_sync(skip_locked=True):
            raise VippsBusyError("Vipps: " + self.env._("Another worker holds it."))
        if tx._vipps_unsettled():
            raise VippsBusyError(
                "Vipps: "
                + self.env._(
                    "Payment %s is still open at Vipps MobilePay.", tx.reference
                )
            )

    def _vipps_run_learn_phone(self):
        """Read the payment again for the number the customer shared (its `sub` was
        not written yet), within the 168 hours Vipps keeps the data."""
        tx = self.transaction_id
        deadline = tx.create_date + timedelta(hours=const.USERINFO_RETENTION_HOURS)
        if fields.Datetime.now() > deadline:
            raise UserError(
                self.env._(
                    "Vipps MobilePay keeps what a customer shares for 168 hours only; "
                    "the number shared on %s was not received in time.",
                    tx.reference,
                )
            )
        payment = tx.provider_id.sudo()._vipps_get_payment(tx.reference)
        if not tx.with_context(vipps_no_requeue=True)._vipps_learn_phone(payment):
            raise VippsBusyError(
                "Vipps: "
                + self.env._("The number shared on %s is not there yet.", tx.reference)
            )

    def _vipps_run_check_reference(self):
        """Look up a payment Odoo created or a webhook named: follow it if Odoo has
        it; adopt it (or withdraw it) if it is ours and Odoo lost it."""
        tx_model = self.env["payment.transaction"].sudo()
        tx = tx_model.search(
            [
                ("reference", "=", self.reference),
                ("provider_code", "=", "vipps"),
                ("source_transaction_id", "=", False),
            ],
            limit=1,
        )
        if tx and tx.vipps_state:
            return  # confirmed by Vipps and committed: the usual path follows it
        provider = self.provider_id.sudo()
        payment = provider._vipps_read_back(self.reference)
        if payment is None:
            if tx:
                tx._vipps_not_at_vipps()  # never reached Vipps
            return
        if not tx:
            metadata = payment.get("metadata") or {}
            if metadata.get(const.METADATA_DATABASE) != (
                provider._vipps_database_marker()
            ):
                return  # not created by this database
            tx = tx_model._vipps_adopt(provider, payment)
            if not tx:
                provider._vipps_release_orphan(payment)
                return
        tx._vipps_lock()
        tx._vipps_follow(payment)

    def _vipps_run_refund(self):
        """Refund a credit note through the Vipps payment of its invoice.

        Two steps, each committed: the refund transaction is recorded first, then
        sent; sent again (same key) until Vipps confirms it, never refunded twice.
        """
        refund_tx = self.transaction_id
        if refund_tx.operation != "refund":
            refund_tx = self._vipps_prepare_refund(refund_tx)
            if not refund_tx:
                return None
            self.transaction_id = refund_tx
            return False  # committed before Vipps is called
        if refund_tx.state == "draft" and not refund_tx._vipps_send_refund():
            raise VippsBusyError(
                "Vipps: "
                + self.env._("Refund %s is not confirmed yet.", refund_tx.reference)
            )
        return None

    def _vipps_prepare_refund(self, paid_by):
        """Create the refund transaction of a credit note (what it still needs,
        within what Vipps can still refund)."""
        credit_note = self.move_id
        refundable = (
            paid_by._vipps_minor(paid_by.vipps_captured_amount)
            - paid_by._vipps_minor(paid_by.vipps_refunded_amount)
            + sum(
                paid_by._vipps_minor(tx.amount)
                for tx in paid_by.child_transaction_ids
                if tx.operation == "refund" and tx.state == "draft"
            )
        )
        if credit_note.state != "posted":
            return None
        amount = min(
            paid_by._vipps_minor(credit_note.amount_residual), max(0, refundable)
        )
        if amount <= 0:
            return None
        refund_tx = paid_by._create_child_transaction(
            paid_by._vipps_major(amount), is_refund=True
        )
        refund_tx.invoice_ids = credit_note  # the refund's payment settles it
        refund_tx._log_sent_message()
        return refund_tx

    def _vipps_retry(self, error):
        """Try again later, waiting longer each time; say so on the invoice once."""
        self.ensure_one()
        attempts = self.attempts + 1
        delay = min(
            const.OUTBOX_FIRST_RETRY_SECONDS * 2 ** (attempts - 1),
            const.OUTBOX_MAX_RETRY_SECONDS,
        )
        if isinstance(error, VippsBusyError) and attempts == 1:
            delay = const.BUSY_RETRY_SECONDS
        values = {
            "attempts": attempts,
            "last_error": _reason(error),
            "next_attempt_at": fields.Datetime.now() + timedelta(seconds=delay),
        }
        if attempts >= const.OUTBOX_MAX_ATTEMPTS and self.operation in (
            "request",
            "resend",
        ):
            values["state"] = "failed"  # too late to send: the accountant decides
        self.write(values)
        if attempts >= const.OUTBOX_NOTE_AFTER_ATTEMPTS:
            self._vipps_note_failure()

    def _vipps_fail(self, error):
        """It cannot be done: keep the reason and say so on the invoice, once."""
        self.ensure_one()
        self.write(
            {
                "state": "failed",
                "attempts": self.attempts + 1,
                "last_error": _reason(error),
            }
        )
        refund_tx = self.transaction_id
        if refund_tx.operation == "refund" and refund_tx.state == "draft":
            # Refused: not to be sent again. Odoo's own message says why.
            refund_tx._set_error(self.last_error)
            self.noted = True
        self._vipps_note_failure()

    def _vipps_note_failure(self):
        invoice = self.move_id or self.transaction_id.invoice_ids[:1]
        if self.noted or not invoice:
            return
        self.noted = True
        if self.operation in ("request", "resend"):
            invoice._vipps_note_not_sent(ValidationError(self.last_error))
            return
        invoice.message_post(
            body=self.env._(
                "Vipps MobilePay: %(what)s keeps failing; Odoo goes on trying "
                "(Invoicing > Configuration > Online Payments > Vipps MobilePay "
                "Outbox): %(reason)s",
                what=dict(self._fields["operation"]._description_selection(self.env))[
                    self.operation
                ],
                reason=self.last_error,
            )
        )


def _process_next_row(env):
    """Take the next due row no other worker holds, do it; False when none is due."""
    env.cr.execute(
        """
        SELECT id FROM payment_vipps_outbox
         WHERE state = 'pending' AND next_attempt_at <= %s
         ORDER BY next_attempt_at, id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
        """,
        [fields.Datetime.now()],
    )
    found = env.cr.fetchone()
    if not found:
        return False
    row = env["payment.vipps.outbox"].sudo().browse(found[0])
    try:
        with env.cr.savepoint():
            finished = row._vipps_run() is not False
    except psycopg2.OperationalError as error:
        _logger.info(
            "Vipps outbox %s %s: retry later (%s)", row.id, row.operation, error
        )
        row._vipps_retry(error)
    except VippsError as error:
        _logger.info("Vipps outbox %s %s: %s", row.id, row.operation, error)
        if error.transient:
            row._vipps_retry(error)
        else:
            row._vipps_fail(error)
    except (UserError, ValidationError) as error:
        _logger.info("Vipps outbox %s %s failed: %s", row.id, row.operation, error)
        row._vipps_fail(error)
    except Exception as error:  # noqa: BLE001 - one row must not stop the others
        _logger.exception("Vipps outbox %s %s: unexpected error", row.id, row.operation)
        row._vipps_retry(error)
    else:
        if finished:
            row.state = "done"
    return True


def _reason(error):
    return str(error.args[0] if error.args else error)
