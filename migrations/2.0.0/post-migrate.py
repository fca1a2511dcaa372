"""From 18.0.1: the request queue on account.move and the webhook event queue become
rows of the Vipps MobilePay outbox (nothing queued is lost); each provider is the
sales unit of one market; consented numbers are kept in E.164."""

import logging

_logger = logging.getLogger(__name__)


def _column_exists(cr, table, column):
    cr.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = %s"
        " AND column_name = %s",
        [table, column],
    )
    return bool(cr.fetchone())


def _table_exists(cr, table):
    cr.execute("SELECT 1 FROM information_schema.tables WHERE table_name = %s", [table])
    return bool(cr.fetchone())


def migrate(cr, version):
    _recompute_markets(cr)
    if _column_exists(cr, "account_move", "vipps_auto_pending"):
        cr.execute(
            """
            INSERT INTO payment_vipps_outbox
                (operation, state, provider_id, move_id, "values", user_id, attempts,
                 next_attempt_at, create_uid, create_date, write_uid, write_date)
            SELECT 'request', 'pending', p.id, m.id,
                   COALESCE(m.vipps_queued_request::jsonb, '{"auto": true}'::jsonb),
                   (m.vipps_queued_request->>'uid')::int, 0,
                   NOW() AT TIME ZONE 'UTC', 1, NOW() AT TIME ZONE 'UTC', 1,
                   NOW() AT TIME ZONE 'UTC'
              FROM account_move m
              JOIN LATERAL (
                   SELECT id FROM payment_provider
                    WHERE code = 'vipps' AND company_id = m.company_id
                    ORDER BY state = 'disabled', id LIMIT 1
              ) p ON TRUE
             WHERE m.vipps_auto_pending
            """
        )
        _logger.info(
            "payment_vipps: %s queued requests moved to the outbox", cr.rowcount
        )
        cr.execute(
            "ALTER TABLE account_move DROP COLUMN vipps_auto_pending,"
            " DROP COLUMN IF EXISTS vipps_queued_request"
        )
    if _table_exists(cr, "payment_vipps_event"):
        cr.execute(
            """
            INSERT INTO payment_vipps_outbox
                (operation, state, provider_id, transaction_id, reference, attempts,
                 next_attempt_at, create_uid, create_date, write_uid, write_date)
            SELECT DISTINCT ON (e.reference) 'sync', 'pending', e.provider_id, t.id,
                   CASE WHEN t.id IS NULL THEN e.reference END, 0,
                   NOW() AT TIME ZONE 'UTC', 1, NOW() AT TIME ZONE 'UTC', 1,
                   NOW() AT TIME ZONE 'UTC'
              FROM payment_vipps_event e
              LEFT JOIN payment_transaction t
                ON t.reference = e.reference AND t.source_transaction_id IS NULL
             WHERE e.state != 'done'
            """
        )
        _logger.info(
            "payment_vipps: %s webhook events moved to the outbox", cr.rowcount
        )
        cr.execute("DROP TABLE payment_vipps_event")


def _recompute_markets(cr):
    """Each Vipps provider is now a sales unit of one market: its currency."""
    from odoo import SUPERUSER_ID, api

    env = api.Environment(cr, SUPERUSER_ID, {})
    providers = env["payment.provider"].search([("code", "=", "vipps")])
    for provider in providers.filtered(lambda p: not p.vipps_currency_id):
        provider.vipps_currency_id = provider._vipps_default_currency()
    providers._compute_available_currency_ids()
    cr.execute(
        "UPDATE res_partner SET vipps_phone = '+' || vipps_phone"
        " WHERE vipps_phone ~ '^[0-9]+$'"
    )
