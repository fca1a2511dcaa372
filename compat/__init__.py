"""What differs between the Odoo series the addon runs on: 18.0 and 19.0.

The rest of the addon asks this package and never tests the version itself.

- Names that moved: the groups of users and actions, the partner's mobile number.
- SQL constraints: declared once with :class:`Constraint`, a ``models.Constraint`` on
  19.0 and an entry of ``_sql_constraints`` on 18.0.
- The payment engine's hooks: ``engine_18`` and ``engine_19`` connect Odoo's payment
  flow of each series to the addon's ``_vipps_*`` methods. 18.0 processes payment data
  with ``_handle_notification_data`` and captures or voids the full amount on the
  transaction itself; 19.0 processes it with ``_process`` and makes every capture,
  void and refund a child transaction. Only the module of the running series is
  loaded.
"""

from odoo import models, release

SERIES = release.serie
ODOO_19 = release.version_info[0] >= 19

#: The field that holds the groups of a user or of an action.
GROUPS = "group_ids" if ODOO_19 else "groups_id"

#: The field that holds the users of a group.
GROUP_USERS = "user_ids" if ODOO_19 else "users"

#: The partner's mobile number: 19.0 has one number, ``phone``.
MOBILE = "phone" if ODOO_19 else "mobile"

#: Whether a capture, void or refund Vipps refuses stays as an errored child
#: transaction (19.0's engine, which tells the accountant in a notification), or is
#: raised to the accountant with nothing kept (18.0).
REFUSAL_KEPT_AS_ERROR = ODOO_19

#: A field domain (text) of the accounts one may still post on; 19.0 archives the
#: others instead of flagging them deprecated.
OPEN_ACCOUNT = "" if ODOO_19 else "[('deprecated', '=', False)] + "

if ODOO_19:
    Constraint = models.Constraint
else:

    class Constraint:
        """An SQL constraint declared as 19.0 declares it, for 18.0.

        ``_name_unique = Constraint("UNIQUE(name)", "message")`` in a model's body
        adds ``("name_unique", "UNIQUE(name)", "message")`` to the model's own
        ``_sql_constraints``, so the constraint keeps its name on both series.
        """

        def __init__(self, definition, message=""):
            self.definition = definition
            self.message = message

        def __set_name__(self, owner, name):
            own = list(owner.__dict__.get("_sql_constraints", []))
            own.append((name[1:], self.definition, self.message))
            owner._sql_constraints = own


def odoo_prints_payment_qr(move):
    """Whether Odoo prints its own "pay online" QR code on the invoice (19.0's
    Display Link QR-code setting); the invoice then needs no second one."""
    return bool(ODOO_19 and move.display_link_qr_code and move.amount_residual)


def process_payment_data(tx, provider_code, data):
    """Update a known transaction from its provider's payment data, as the engine of
    the series does once it has found it (the benchmark's payment_demo baseline)."""
    if ODOO_19:
        return tx._process(provider_code, data)
    return tx._process_notification_data(data)


def restrict_to_group(env, xmlids, group_xmlid):
    """Give actions the group that may see them, in the field of the series."""
    group = env.ref(group_xmlid)
    for xmlid in xmlids:
        env.ref(xmlid).write({GROUPS: [(4, group.id)]})


if ODOO_19:
    from . import engine_19  # noqa: E402, F401
else:
    from . import engine_18  # noqa: E402, F401
