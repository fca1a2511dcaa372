import logging

from odoo import api, fields, models

from ..exceptions import VippsError

_logger = logging.getLogger(__name__)


class PaymentVippsEvent(models.Model):
    """A webhook delivery from Vipps, kept until the payment has been read back.

    Webhooks are answered at once and processed by a cron job triggered on arrival,
    so bursts of deliveries never hold up Vipps or the web workers. The unique key
    drops duplicates (Vipps delivers at least once).
    """

    _name = "payment.vipps.event"
    _description = "Vipps MobilePay Webhook Event"
    _order = "id"

    provider_id = fields.Many2one(
        "payment.provider", required=True, ondelete="cascade", index=True
    )
    reference = fields.Char(required=True, index=True)
    name = fields.Char(string="Event", required=True)
    psp_reference = fields.Char(string="PSP Reference")
    event_timestamp = fields.Char(string="Sent At")
    state = fields.Selection(
        [("new", "To Process"), ("done", "Processed"), ("failed", "Failed")],
        default="new",
        required=True,
        index=True,
    )
    attempts = fields.Integer(default=0)

    _sql_constraints = [
        (
            "unique_delivery",
            "UNIQUE(provider_id, reference, name, psp_reference)",
            "This Vipps event was already received.",
        )
    ]

    @api.model
    def _vipps_enqueue(self, provider, event):
        """Store a webhook event (dropping duplicates); wake the processing job."""
        self.env.cr.execute(
            """
            INSERT INTO payment_vipps_event
                (provider_id, reference, name, psp_reference, event_timestamp, state,
                 attempts, create_uid, create_date, write_uid, write_date)
            VALUES (%s, %s, %s, %s, %s, 'new', 0, %s, NOW() AT TIME ZONE 'UTC',
                    %s, NOW() AT TIME ZONE 'UTC')
            ON CONFLICT (provider_id, reference, name, psp_reference) DO NOTHING
            """,
            [
                provider.id,
                str(event.get("reference") or ""),
                str(event.get("name") or ""),
                str(event.get("pspReference") or ""),
                str(event.get("timestamp") or ""),
                self.env.uid,
                self.env.uid,
            ],
        )
        if self.env.cr.rowcount:
            self.env.ref("payment_vipps.cron_process_events")._trigger()

    @api.model
    def _cron_process(self, batch_size=50):
        """Read back the payments that webhooks told us about, a batch at a time."""
        events = self.search([("state", "=", "new")], limit=batch_size * 4)
        references = list(dict.fromkeys(events.mapped("reference")))[:batch_size]
        events = events.filtered(lambda event: event.reference in references)
        transactions = self.env["payment.transaction"].search(
            [("reference", "in", references), ("provider_code", "=", "vipps")]
        )
        by_reference = {tx.reference: tx for tx in transactions}
        for reference in references:
            reference_events = events.filtered(lambda e, r=reference: e.reference == r)
            tx = by_reference.get(reference)
            if not tx:
                _logger.info("Vipps event for unknown reference %s: ignored", reference)
                reference_events.state = "done"
                continue
            if tx._vipps_events_change_nothing(reference_events.mapped("name")):
                reference_events.state = "done"
                continue
            try:
                with self.env.cr.savepoint():
                    tx._vipps_sync()
            except VippsError as error:
                _logger.warning("Vipps: could not process %s: %s", reference, error)
                reference_events.attempts += 1
                reference_events.filtered(lambda e: e.attempts >= 5).state = "failed"
                continue
            reference_events.state = "done"
        # Events whose processing failed wait for the next scheduled run.
        remaining = self.search_count([("state", "=", "new"), ("attempts", "=", 0)])
        self.env["ir.cron"]._notify_progress(done=len(references), remaining=remaining)
