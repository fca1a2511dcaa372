from . import controllers
from . import models
from . import wizards

from odoo.addons.payment import reset_payment_provider, setup_provider


def post_init_hook(env):
    setup_provider(env, "vipps")


def uninstall_hook(env):
    # Vipps should not go on sending webhooks to an endpoint that no longer exists.
    env["payment.provider"].search(
        [("code", "=", "vipps"), ("vipps_webhook_id", "!=", False)]
    )._vipps_drop_webhook()
    reset_payment_provider(env, "vipps")
    _remove_sending_method(env)


def _remove_sending_method(env):
    """Forget "by Vipps MobilePay" as customers' invoice sending method.

    The field is company-dependent (a JSON column), which Odoo's own clean-up of
    selection values added by a module cannot handle: do it here.
    """
    env.cr.execute(
        """
        UPDATE res_partner
           SET invoice_sending_method = (
                   SELECT jsonb_object_agg(key, value)
                     FROM jsonb_each(invoice_sending_method)
                    WHERE value <> '"vipps"'::jsonb
               )
         WHERE invoice_sending_method @> ANY (
                   SELECT jsonb_build_object(key, 'vipps')
                     FROM jsonb_each(invoice_sending_method)
               )
        """
    )
    selection = env.ref(
        "payment_vipps.selection__res_partner__invoice_sending_method__vipps",
        raise_if_not_found=False,
    )
    if selection:
        env.cr.execute(
            "DELETE FROM ir_model_fields_selection WHERE id = %s", [selection.id]
        )
        env.cr.execute(
            "DELETE FROM ir_model_data WHERE model = 'ir.model.fields.selection'"
            " AND module = 'payment_vipps'"
        )
