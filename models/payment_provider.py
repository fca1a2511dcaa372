import logging
import pprint
import time
from datetime import timedelta

import psycopg2
import requests
from werkzeug import urls

from odoo import api, fields, models, modules, service
from odoo.exceptions import UserError, ValidationError

from .. import compat, const, utils
from ..exceptions import VippsError, VippsUnreachableError

_logger = logging.getLogger(__name__)

# Access tokens cached in this process, per database and provider, as
# {(dbname, provider_id): (credentials_fingerprint, token, expiry_datetime)}.
_TOKEN_CACHE = {}


class PaymentProvider(models.Model):
    _inherit = "payment.provider"

    code = fields.Selection(
        selection_add=[("vipps", "Vipps MobilePay")], ondelete={"vipps": "set default"}
    )
    vipps_merchant_serial_number = fields.Char(
        string="Merchant Serial Number",
        help="The number of the sales unit (MSN) in the Vipps MobilePay portal.",
        required_if_provider="vipps",
    )
    vipps_client_id = fields.Char(
        string="Client ID",
        required_if_provider="vipps",
        groups="base.group_system",
    )
    vipps_client_secret = fields.Char(
        string="Client Secret",
        required_if_provider="vipps",
        groups="base.group_system",
    )
    vipps_subscription_key = fields.Char(
        string="Subscription Key",
        help="The primary or secondary Ocp-Apim-Subscription-Key of the sales unit.",
        required_if_provider="vipps",
        groups="base.group_system",
    )
    vipps_api_url_override = fields.Char(
        string="API Base URL Override",
        help="Technical: send every API call to this URL instead of the Vipps host "
        "of the current state, e.g. http://127.0.0.1:8077 for the local Vipps "
        "emulator. Leave empty in real use.",
        groups="base.group_system",
    )
    vipps_max_expiry_hours = fields.Integer(
        string="Longest Request Lifetime (hours)",
        default=const.DEFAULT_MAX_EXPIRY_HOURS,
        help="The latest a payment request may expire, counted from when it is sent. "
        "Long-living payment requests must be approved by Vipps MobilePay for the "
        "sales unit; Norwegian sales units are limited to 24 hours by the terms.",
    )
    vipps_auto_request = fields.Boolean(
        string="Request Payment When Invoices Are Posted",
        help="Each customer invoice posted in this company is sent a Vipps MobilePay "
        "payment request, shortly after posting.",
    )
    vipps_auto_push = fields.Boolean(
        string="Push to Customers Who Opted In",
        default=True,
        help="Customers who shared their number through Vipps get a push request.",
    )
    vipps_auto_email = fields.Boolean(
        string="E-mail the Pay Link to the Others",
        default=True,
        help="Other customers are e-mailed the 'Pay with Vipps' link.",
    )
    vipps_resend_expired = fields.Integer(
        string="Re-send Expired Requests (times)",
        default=0,
        help="A push request that expires unpaid is sent again, at most once a day, "
        "up to this many times. 0: never.",
    )
    vipps_refund_credit_notes = fields.Boolean(
        string="Refund Credit Notes Through Vipps",
        help="When a credit note of an invoice paid with Vipps MobilePay is posted, "
        "refund its amount to the customer through Vipps at once.",
    )
    vipps_webhook_id = fields.Char(
        string="Webhook ID", groups="base.group_system", copy=False, readonly=True
    )
    vipps_webhook_url = fields.Char(
        string="Webhook URL", groups="base.group_system", copy=False, readonly=True
    )
    vipps_webhook_secret = fields.Char(
        string="Webhook Secret", groups="base.group_system", copy=False, readonly=True
    )
    vipps_reference_prefix = fields.Char(
        string="Reference Prefix",
        default=lambda self: self._vipps_default_reference_prefix(),
        help="Put before every Vipps reference of this database (K3F9-INV-2026-00012): "
        "references must be unique per sales unit, so databases that share one (a "
        "test copy, another company) must each have their own prefix. Up to 10 "
        "letters and digits; empty for none.",
    )
    vipps_currency_id = fields.Many2one(
        "res.currency",
        string="Market",
        domain=[("name", "in", const.SUPPORTED_CURRENCIES)],
        default=lambda self: self._vipps_default_currency(),
        context={"active_test": False},
        help="The one currency of this sales unit's market: NOK (Norway), DKK "
        "(Denmark) or EUR (Finland). Invoices in that currency are sent through it; "
        "a company that invoices in several gets one provider per sales unit.",
    )
    vipps_push_allowed = fields.Boolean(
        string="Push Messages Approved",
        default=True,
        help="Vipps MobilePay approved this sales unit to send payment requests "
        "straight to the customer's app (PUSH_MESSAGE). Without it, customers get the "
        "'Pay with Vipps' link by e-mail. Odoo unticks it when Vipps refuses (5080).",
    )
    vipps_long_living_allowed = fields.Boolean(
        string="Long-Living Requests Approved",
        default=True,
        help="Vipps MobilePay approved this sales unit for payment requests that live "
        "longer than 10 minutes (expiresAt), up to the Longest Request Lifetime. "
        "Without it a push request would expire before the customer sees it, so "
        "customers get the 'Pay with Vipps' link by e-mail. Odoo unticks it when "
        "Vipps refuses (5050).",
    )
    vipps_capability_note = fields.Text(
        string="What Vipps Refused",
        readonly=True,
        copy=False,
        help="When and why Odoo stopped asking Vipps for push messages or long-living "
        "requests.",
    )

    # === COMPUTE METHODS === #

    def _compute_feature_support_fields(self):
        """Override of `payment` to enable manual (full) capture and partial refunds."""
        res = super()._compute_feature_support_fields()
        self.filtered(lambda provider: provider.code == "vipps").update(
            {"support_manual_capture": "full_only", "support_refund": "partial"}
        )
        return res

    @api.depends("code", "vipps_currency_id")
    def _compute_available_currency_ids(self):
        """Override of `payment` to offer a Vipps provider in its market's currency
        only (Odoo's payment form then routes each invoice to its sales unit)."""
        return super()._compute_available_currency_ids()

    @api.model
    def _vipps_default_reference_prefix(self):
        """Four characters of this database's UUID: another database gets others."""
        database_uuid = (
            self.env["ir.config_parameter"].sudo().get_param("database.uuid") or ""
        )
        return utils.idempotency_key(database_uuid, "reference")[:4].upper()

    @api.model
    def _vipps_default_currency(self):
        currency = self.env.company.currency_id
        if currency.name not in const.SUPPORTED_CURRENCIES:
            currency = self.env.ref("base.NOK", raise_if_not_found=False)
        return currency

    # === CONSTRAINT METHODS === #

    @api.constrains("vipps_currency_id")
    def _check_vipps_currency_id(self):
        for provider in self.filtered(lambda p: p.code == "vipps"):
            if provider.vipps_currency_id.name not in const.SUPPORTED_CURRENCIES:
                raise ValidationError(
                    self.env._(
                        "A Vipps MobilePay sales unit takes NOK (Norway), DKK "
                        "(Denmark) or EUR (Finland)."
                    )
                )

    @api.constrains("vipps_reference_prefix")
    def _check_vipps_reference_prefix(self):
        for provider in self.filtered(lambda p: p.code == "vipps"):
            prefix = provider.vipps_reference_prefix or ""
            if not const.REFERENCE_PREFIX_PATTERN.match(prefix):
                raise ValidationError(
                    self.env._(
                        "The reference prefix may hold up to 10 letters and digits "
                        "only, not %s.",
                        prefix,
                    )
                )

    @api.constrains("vipps_merchant_serial_number")
    def _check_vipps_merchant_serial_number(self):
        for provider in self.filtered(lambda p: p.code == "vipps"):
            msn = provider.vipps_merchant_serial_number
            if msn and not const.MSN_PATTERN.match(msn):
                raise ValidationError(
                    self.env._(
                        "%s is not a Merchant Serial Number: Vipps MobilePay's are 4 "
                        "to 6 digits (the number of the sales unit in the business "
                        "portal).",
                        msn,
                    )
                )

    @api.constrains("vipps_max_expiry_hours")
    def _check_vipps_max_expiry_hours(self):
        for provider in self.filtered(lambda p: p.code == "vipps"):
            if not 1 <= provider.vipps_max_expiry_hours <= const.MAX_EXPIRY_HOURS:
                raise ValidationError(
                    self.env._(
                        "The longest request lifetime must be between 1 and %s hours.",
                        const.MAX_EXPIRY_HOURS,
                    )
                )

    # === CRUD METHODS === #

    def write(self, vals):
        """Override of `base` to keep exactly one webhook registration per sales unit.

        The registration of a provider that is disabled, or whose credentials or
        environment change, is deleted first (with the old credentials; an obsolete
        endpoint should not be left answering errors to Vipps); a provider that is
        enabled (again) registers, and a failed registration refuses the save.
        A token issued for other credentials is not used again: tokens are stored
        with a fingerprint of the credentials they were issued for.
        """
        vipps = self.filtered(lambda p: p.code == "vipps")
        bound = set(vals) & const.WEBHOOK_BOUND_FIELDS
        leaving = vipps.sudo().filtered(
            lambda p: p.vipps_webhook_id
            and any(p[field] != (vals[field] or False) for field in bound)
        )
        leaving._vipps_drop_webhook()
        result = super().write(vals)
        if vals.get("state") in ("test", "enabled") or leaving:
            for provider in vipps.filtered(lambda p: p.state in ("test", "enabled")):
                if provider._vipps_is_configured():
                    provider._vipps_check_base_url()
                    provider._vipps_ensure_webhook()
        return result

    # === ACTION METHODS === #

    def action_vipps_register_webhook(self):
        """Register (again) the webhook that tells Odoo about payment changes."""
        self.ensure_one()
        self._vipps_ensure_webhook(force=True)
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "message": self.env._("The Vipps MobilePay webhook is registered."),
            },
        }

    # === BUSINESS METHODS - GETTERS === #

    def _get_supported_currencies(self):
        """Override of `payment` to return the currency of the sales unit's market."""
        supported_currencies = super()._get_supported_currencies()
        if self.code == "vipps":
            supported_currencies = supported_currencies.filtered(
                lambda currency: currency.name in const.SUPPORTED_CURRENCIES
                and currency == (self.vipps_currency_id or currency)
            )
        return supported_currencies

    def _get_default_payment_method_codes(self):
        """Override of `payment` to return the default payment method codes."""
        default_codes = super()._get_default_payment_method_codes()
        if self.code != "vipps":
            return default_codes
        return const.DEFAULT_PAYMENT_METHOD_CODES

    def _vipps_get_api_url(self):
        """Return the base URL of the Vipps API for the provider's state.

        Note: self.ensure_one()

        :return: The override when one is set, else the test or production host.
        :rtype: str
        """
        self.ensure_one()
        override = self.sudo().vipps_api_url_override
        if override:
            return override.rstrip("/")
        return const.API_URLS["enabled" if self.state == "enabled" else "test"]

    @api.model
    def _vipps_find(self, company, currency=None):
        """The Vipps sales unit in use (test or enabled) of a company, for a currency
        when given, if any (sudo)."""
        domain = [
            ("code", "=", "vipps"),
            ("state", "in", ("enabled", "test")),
            ("company_id", "=", company.id),
        ]
        if currency:
            domain.append(("vipps_currency_id", "=", currency.id))
        return self.sudo().search(domain, limit=1)

    def _vipps_learn_refusal(self, error):
        """Stop asking for what Vipps refused this sales unit, and say so.

        5080: push messages are not approved; 5050: long-living requests are not.
        Either way a payment request would not reach the customer in the app: the
        customer gets the pay link by e-mail until an administrator ticks the
        approval again.

        :return: whether the error was such a refusal
        """
        self.ensure_one()
        field = {
            const.ERROR_PUSH_NOT_ALLOWED: "vipps_push_allowed",
            const.ERROR_LONG_LIVING_NOT_ALLOWED: "vipps_long_living_allowed",
        }.get(error.code)
        if not field:
            return False
        provider_sudo = self.sudo()
        if provider_sudo[field]:
            what = self._fields[field].get_description(self.env)["string"]
            note = self.env._(
                "%(date)s: Vipps MobilePay refused %(what)s for sales unit %(msn)s "
                "(error %(code)s). Customers get the 'Pay with Vipps' link by e-mail "
                "instead. Once Vipps approves it, tick '%(what)s' again.",
                date=fields.Date.to_string(fields.Date.today()),
                what=what,
                msn=provider_sudo.vipps_merchant_serial_number,
                code=error.code,
            )
            provider_sudo.write(
                {
                    field: False,
                    "vipps_capability_note": "\n".join(
                        filter(None, [provider_sudo.vipps_capability_note, note])
                    ),
                }
            )
            _logger.warning(
                "Vipps refused %s for %s (%s)", field, self.name, error.code
            )
            admins = self.env.ref("base.group_system").sudo()[compat.GROUP_USERS]
            self.company_id.partner_id.sudo().message_notify(
                partner_ids=admins.partner_id.ids,
                subject=self.env._("Vipps MobilePay: %s not approved", what),
                body=note,
            )
        return True

    def _vipps_push_possible(self):
        """Whether a payment request can reach the customer in the app at all."""
        self.ensure_one()
        return self.vipps_push_allowed and self.vipps_long_living_allowed

    def _vipps_is_configured(self):
        provider_sudo = self.sudo()
        return all(
            provider_sudo[field]
            for field in (
                "vipps_merchant_serial_number",
                "vipps_client_id",
                "vipps_client_secret",
                "vipps_subscription_key",
            )
        )

    def _vipps_uses_order_management(self):
        """Order Management exists in production only (and in the emulator)."""
        self.ensure_one()
        return self.state == "enabled" or bool(self.sudo().vipps_api_url_override)

    def _vipps_payment_method(self, currency):
        """Odoo's payment method for a currency: Vipps for NOK, MobilePay otherwise."""
        code = "vipps" if currency.name == "NOK" else "mobile_pay"
        # The provider's own methods are read once per batch; the search is for a
        # method that was unlinked from the provider.
        linked = self.payment_method_ids.filtered(lambda method: method.code == code)
        return linked[:1] or (
            self.env["payment.method"]
            .with_context(active_test=False)
            .search([("code", "=", code)], limit=1)
        )

    def _vipps_return_url(self, tx):
        """Where Vipps sends the customer back; a token binds it to the transaction."""
        query = urls.url_encode(
            {
                "reference": tx.reference,
                "token": tx._vipps_return_token(),
            }
        )
        return f"{self.get_base_url()}{const.RETURN_ROUTE}?{query}"

    def _vipps_check_expiry(self, expires_at):
        """Raise a UserError when Vipps would refuse this expiry."""
        self.ensure_one()
        now = fields.Datetime.now()
        earliest = now + timedelta(minutes=const.MIN_EXPIRY_MINUTES)
        latest = now + timedelta(hours=self.vipps_max_expiry_hours, minutes=1)
        if not earliest <= expires_at <= latest:
            raise UserError(
                self.env._(
                    "The request must expire between %(earliest)s minutes and "
                    "%(latest)s hours from now.",
                    earliest=const.MIN_EXPIRY_MINUTES,
                    latest=self.vipps_max_expiry_hours,
                )
            )

    def _vipps_get_system_headers(self):
        """Return the headers Vipps asks every plugin to send on every call."""
        limit = const.SYSTEM_HEADER_MAX_LENGTH
        odoo_version = service.common.exp_version()["server_version"]
        # From the manifest (cached), not the database: no query per API call.
        version = modules.get_manifest(const.MODULE).get("version") or ""
        return {
            "Merchant-Serial-Number": self.vipps_merchant_serial_number or "",
            "Vipps-System-Name": const.SYSTEM_NAME,
            "Vipps-System-Version": odoo_version[:limit],
            "Vipps-System-Plugin-Name": const.MODULE[:limit],
            "Vipps-System-Plugin-Version": version[:limit],
        }

    def _vipps_idempotency_key(self, *parts):
        """Return an Idempotency-Key derived from an operation's identity.

        The same operation (e.g. the capture of one amount on one payment) always gets
        the same key, so a retry after a lost answer cannot be carried out twice.
        """
        database_uuid = (
            self.env["ir.config_parameter"].sudo().get_param("database.uuid")
        )
        return utils.idempotency_key(database_uuid, *parts)

    # === BUSINESS METHODS - ACCESS TOKEN === #

    def _vipps_credentials_fingerprint(self):
        """A digest of what a token is valid for: host and credentials."""
        provider_sudo = self.sudo()
        return utils.idempotency_key(
            self._vipps_get_api_url(),
            provider_sudo.vipps_client_id,
            provider_sudo.vipps_client_secret,
            provider_sudo.vipps_subscription_key,
            provider_sudo.vipps_merchant_serial_number,
        )

    def _vipps_fetch_access_token(self, force_refresh=False):
        """Return a valid access token, fetching a new one only when needed.

        The token is cached in this process and on the provider (for the other
        workers), and renewed a few minutes before it expires.

        Note: self.ensure_one()

        :param bool force_refresh: ignore the cached token (after a 401)
        :return: the bearer token
        :rtype: str
        """
        self.ensure_one()
        cache_key = (self.env.cr.dbname, self.id)
        fingerprint = self._vipps_credentials_fingerprint()
        margin = timedelta(seconds=const.TOKEN_RENEWAL_MARGIN)
        now = fields.Datetime.now()
        if not force_refresh:
            cached = _TOKEN_CACHE.get(cache_key)
            if cached and cached[0] == fingerprint and cached[2] - margin > now:
                return cached[1]
            stored = (
                self.env["payment.vipps.token"]
                .sudo()
                .search([("provider_id", "=", self.id)], limit=1)
            )
            if stored.fingerprint == fingerprint and stored.expires_at - margin > now:
                _TOKEN_CACHE[cache_key] = (fingerprint, stored.token, stored.expires_at)
                return stored.token
        token, expiry = self._vipps_request_access_token()
        _TOKEN_CACHE[cache_key] = (fingerprint, token, expiry)
        self._vipps_store_access_token(fingerprint, token, expiry)
        return token

    def _vipps_request_access_token(self):
        """Call the Access Token API; return the token and its expiry."""
        provider_sudo = self.sudo()
        headers = {
            "client_id": provider_sudo.vipps_client_id or "",
            "client_secret": provider_sudo.vipps_client_secret or "",
            "Ocp-Apim-Subscription-Key": provider_sudo.vipps_subscription_key or "",
            **self._vipps_get_system_headers(),
        }
        try:
            response = self._vipps_send(
                "POST", const.API_VERSION_PATHS["token"], headers
            )
        except VippsError as error:
            if error.status not in (401, 403):
                raise
            raise VippsError(
                "Vipps: "
                + self.env._(
                    "Vipps MobilePay did not accept the credentials (%(detail)s). "
                    "Check the merchant serial number, client ID, client secret and "
                    "subscription key of the provider, and its test/production state.",
                    detail=error.problem.get("detail") or error.problem.get("title"),
                ),
                error.problem,
            ) from error
        content = response.json()
        token = content.get("access_token")
        if not token:
            raise VippsError("Vipps: " + self.env._("No access token was received."))
        # The API types the lifetimes as strings ("3600").
        lifetime = int(content.get("expires_in") or 3600)
        return token, fields.Datetime.now() + timedelta(seconds=lifetime)

    def _vipps_store_access_token(self, fingerprint, token, expiry):
        """Share a new token with the other workers, without holding up this one.

        Written by a transaction of its own, committed at once, in a table that
        nothing else writes; given up (the token then stays in this process only)
        if another worker holds the row for more than a moment.
        """
        try:
            with self.env.registry.cursor() as cr:
                cr.execute("SET LOCAL lock_timeout = '2s'")
                cr.execute(
                    """
                    INSERT INTO payment_vipps_token
                        (provider_id, fingerprint, token, expires_at,
                         create_uid, create_date, write_uid, write_date)
                    VALUES (%s, %s, %s, %s, %s, NOW() AT TIME ZONE 'UTC',
                            %s, NOW() AT TIME ZONE 'UTC')
                    ON CONFLICT (provider_id) DO UPDATE
                       SET fingerprint = EXCLUDED.fingerprint,
                           token = EXCLUDED.token,
                           expires_at = EXCLUDED.expires_at,
                           write_date = EXCLUDED.write_date
                    """,
                    [self.id, fingerprint, token, expiry, self.env.uid, self.env.uid],
                )
        except psycopg2.Error as error:
            _logger.info(
                "Vipps: token not shared with other workers (%s)", error.pgcode
            )
        self.env["payment.vipps.token"].invalidate_model()

    # === BUSINESS METHODS - API REQUESTS === #

    def _vipps_make_request(
        self,
        endpoint,
        payload=None,
        method="POST",
        idempotency_key=None,
        extra_headers=None,
    ):
        """Call the Vipps MobilePay API and return the decoded JSON body.

        Every call carries the access token, the subscription key, the merchant serial
        number and the Vipps-System-* headers. Connection errors, timeouts, 423, 429
        and 5xx are retried with the same Idempotency-Key and body; a 401 renews the
        token once; other errors are raised at once.

        Note: self.ensure_one()

        :param str endpoint: the path below the API host, e.g. /epayment/v1/payments
        :param dict payload: the JSON body, if any
        :param str method: the HTTP method
        :param str idempotency_key: sent on writes so that a retry is not a new write
        :param dict extra_headers: headers added to (or, if None, removed from) the
            standard ones
        :return: the decoded JSON body ({} when empty)
        :rtype: dict | list
        :raise VippsError: when Vipps refuses the call
        :raise VippsUnreachableError: when Vipps cannot be reached
        """
        self.ensure_one()
        for attempt in (1, 2):
            headers = {
                "Authorization": "Bearer "
                + self._vipps_fetch_access_token(force_refresh=attempt > 1),
                "Ocp-Apim-Subscription-Key": self.sudo().vipps_subscription_key or "",
                **self._vipps_get_system_headers(),
            }
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            for name, value in (extra_headers or {}).items():
                if value is None:
                    headers.pop(name, None)
                else:
                    headers[name] = value
            try:
                response = self._vipps_send(method, endpoint, headers, payload)
            except VippsError as error:
                if error.status == 401 and attempt == 1:
                    _logger.info(
                        "Vipps: 401 on %s %s, renewing the token", method, endpoint
                    )
                    continue
                raise
            break
        if not response.content:
            return {}
        return response.json()

    def _vipps_send(self, method, endpoint, headers, payload=None):
        """Send one call, retrying what is worth retrying; return the 2xx response."""
        url = self._vipps_get_api_url() + endpoint
        _logger.info(
            "Vipps %s %s (Idempotency-Key %s):\n%s",
            method,
            endpoint,
            headers.get("Idempotency-Key"),
            pprint.pformat(utils.mask(payload)),
        )
        attempt = 0
        while True:
            attempt += 1
            delay = const.RETRY_BACKOFF[min(attempt, len(const.RETRY_BACKOFF)) - 1]
            try:
                response = requests.request(
                    method,
                    url,
                    json=payload,
                    headers=headers,
                    timeout=const.REQUEST_TIMEOUT,
                )
            except requests.exceptions.RequestException as error:
                if attempt < const.MAX_ATTEMPTS:
                    _logger.warning(
                        "Vipps %s %s: no answer (%s), retry %s in %s s",
                        method,
                        endpoint,
                        type(error).__name__,
                        attempt,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                _logger.warning("Vipps %s %s: no answer, giving up", method, endpoint)
                raise VippsUnreachableError(
                    "Vipps: "
                    + self.env._(
                        "Vipps MobilePay could not be reached (%(error)s). Please try "
                        "again in a moment.",
                        error=type(error).__name__,
                    )
                ) from error
            if response.ok:
                return response
            if response.status_code in const.RETRYABLE_STATUSES:
                retry_after = _retry_after_seconds(response, default=delay)
                if (
                    attempt < const.MAX_ATTEMPTS
                    and retry_after <= const.MAX_RETRY_AFTER
                ):
                    _logger.warning(
                        "Vipps %s %s answered %s, retry %s in %s s",
                        method,
                        endpoint,
                        response.status_code,
                        attempt,
                        retry_after,
                    )
                    time.sleep(retry_after)
                    continue
            raise self._vipps_error_from_response(method, endpoint, response)

    def _vipps_error_from_response(self, method, endpoint, response):
        """Log a refused call and return the error to raise, quoting Vipps."""
        problem = utils.parse_problem(response)
        _logger.warning(
            "Vipps refused %s %s: HTTP %s, code %s, %s: %s %s (traceId %s)",
            method,
            endpoint,
            problem["status"],
            problem["code"],
            problem["title"],
            problem["detail"],
            problem["fields"],
            problem["trace_id"],
        )
        explanation = problem["detail"] or problem["title"]
        if problem["fields"]:
            explanation = f"{explanation} ({'; '.join(problem['fields'])})"
        if problem["code"]:
            message = self.env._(
                "Vipps MobilePay refused the request: %(title)s. %(detail)s "
                "(error code %(code)s)",
                title=problem["title"],
                detail=explanation,
                code=problem["code"],
            )
        else:
            message = self.env._(
                "Vipps MobilePay refused the request: %(title)s. %(detail)s "
                "(HTTP %(status)s)",
                title=problem["title"],
                detail=explanation,
                status=problem["status"],
            )
        return VippsError("Vipps: " + message, problem)

    # === BUSINESS METHODS - EPAYMENT API === #

    def _vipps_database_marker(self):
        """A digest of this database's UUID, written in the metadata of every payment it
        creates: a payment read back is ours only if it carries it."""
        database_uuid = (
            self.env["ir.config_parameter"].sudo().get_param("database.uuid")
        )
        return utils.idempotency_key(database_uuid, "marker")[:16]

    def _vipps_create_payment(self, payload, idempotency_key, is_ours):
        """Create an ePayment; return Vipps's answer ({reference, redirectUrl}).

        When the answer is lost (or Vipps failed on its side), the payment is read back:
        it exists (created once) or it does not (not created, the error is raised).
        When Vipps says the reference exists, its payment is adopted only if `is_ours`
        recognises it (see `payment.transaction._vipps_is_own_payment`).

        :param is_ours: a function telling whether a payment read back is this
            request's

        :raise VippsUnreachableError: when Vipps may have created the payment but
            cannot tell (the caller must not say that nothing was sent)
        """
        try:
            return self._vipps_make_request(
                const.API_VERSION_PATHS["payments"],
                payload=payload,
                idempotency_key=idempotency_key,
            )
        except VippsError as error:
            uncertain = _uncertain(error)
            exists = error.code in (
                const.ERROR_REFERENCE_EXISTS,
                const.ERROR_IDEMPOTENCY_CONFLICT,
            )
            if not (uncertain or exists):
                raise
            try:
                payment = self._vipps_read_back(payload["reference"])
            except VippsError as read_error:
                if uncertain:
                    raise VippsUnreachableError(error.args[0], error.problem) from (
                        read_error
                    )
                raise error from read_error
            if payment is None and uncertain:
                # Vipps answered that it has no such payment: nothing was created.
                raise VippsError(
                    error.args[0]
                    + " "
                    + self.env._("Nothing was sent to the customer."),
                    error.problem,
                ) from error
            if not payment or not is_ours(payment):
                raise VippsError(error.args[0], error.problem) from error
            _logger.info("Vipps: %s already created, adopted", payload["reference"])
            return {"reference": payment["reference"], **_redirect_url(payment)}

    def _vipps_get_payment(self, reference):
        return self._vipps_make_request(
            f"{const.API_VERSION_PATHS['payments']}/{reference}", method="GET"
        )

    def _vipps_get_payment_events(self, reference):
        return self._vipps_make_request(
            f"{const.API_VERSION_PATHS['payments']}/{reference}/events", method="GET"
        )

    def _vipps_modify_payment(self, reference, operation, payload, idempotency_key):
        """Capture, refund or cancel a payment; return the payment's new state.

        The answer (a ModificationResponse) and, after a lost answer, the payment read
        back have the same state and aggregate amounts: what moved is for the caller to
        book from the aggregate, whichever it got.

        :param str operation: capture, refund or cancel
        :raise VippsUnreachableError: when neither the answer nor a read-back came
        """
        try:
            return self._vipps_make_request(
                f"{const.API_VERSION_PATHS['payments']}/{reference}/{operation}",
                payload=payload,
                idempotency_key=idempotency_key,
            )
        except VippsError as error:
            if not _uncertain(error):
                raise
            try:
                payment = self._vipps_read_back(reference)
            except VippsError as read_error:
                raise VippsUnreachableError(error.args[0], error.problem) from (
                    read_error
                )
            if not payment:
                raise
            return payment

    def _vipps_release_orphan(self, payment):
        """End a payment of ours whose invoice Odoo no longer has: withdraw it if it
        waits in the app, release it if the customer approved it."""
        reference = payment["reference"]
        key = self._vipps_idempotency_key(reference, "orphan")
        if payment.get("state") in ("CREATED", "AUTHORIZED"):
            _logger.warning("Vipps: %s has no invoice in Odoo: cancelled", reference)
            self._vipps_modify_payment(
                reference, "cancel", {"cancelTransactionOnly": False}, key
            )

    def _vipps_read_back(self, reference):
        """Return the payment as Vipps has it, or None if Vipps does not know it."""
        try:
            return self._vipps_get_payment(reference)
        except VippsError as error:
            if error.status == 404 or error.code == const.ERROR_NOT_FOUND:
                return None
            raise

    # === BUSINESS METHODS - ORDER MANAGEMENT API === #

    def _vipps_add_category(
        self, reference, category, order_details_url, image_id=None
    ):
        """Attach a category and a link to the order (e.g. the invoice page)."""
        payload = {"category": category, "orderDetailsUrl": order_details_url}
        if image_id:
            payload["imageId"] = image_id
        return self._vipps_make_request(
            f"{const.API_VERSION_PATHS['order_management']}/categories/{reference}",
            payload=payload,
            method="PUT",
        )

    def _vipps_add_receipt(self, reference, receipt):
        """Attach the order lines (once only; receipts cannot be changed)."""
        return self._vipps_make_request(
            f"{const.API_VERSION_PATHS['order_management']}/receipts/{reference}",
            payload=receipt,
        )

    def _vipps_get_order(self, reference):
        return self._vipps_make_request(
            f"{const.API_VERSION_PATHS['order_management']}/{reference}", method="GET"
        )

    # === BUSINESS METHODS - WEBHOOKS API === #

    def _vipps_webhook_url(self):
        return f"{self.get_base_url()}{const.WEBHOOK_ROUTE}"

    def _vipps_ensure_webhook(self, force=False):
        """Make sure Vipps has one webhook registration for us, and that we have its
        secret. Idempotent: nothing is registered when the stored one is still listed.

        :param bool force: replace the registration even if it looks fine
        """
        self.ensure_one()
        provider_sudo = self.sudo()
        url = self._vipps_webhook_url()
        registrations = self._vipps_list_webhooks()
        stored = provider_sudo.vipps_webhook_id
        ours_listed = any(
            reg.get("id") == stored and reg.get("url") == url for reg in registrations
        )
        if (
            not force
            and ours_listed
            and provider_sudo.vipps_webhook_url == url
            and provider_sudo.vipps_webhook_secret
        ):
            return False
        # Registrations of this URL whose secret we do not hold are useless: the
        # secret is only given at registration.
        for reg in registrations:
            if reg.get("url") == url or (stored and reg.get("id") == stored):
                self._vipps_delete_webhook(reg["id"])
        answer = self._vipps_register_webhook(url, const.WEBHOOK_EVENTS)
        provider_sudo.write(
            {
                "vipps_webhook_id": answer["id"],
                "vipps_webhook_url": url,
                "vipps_webhook_secret": answer["secret"],
            }
        )
        _logger.info("Vipps webhook %s registered for %s", answer["id"], url)
        return True

    def _vipps_drop_webhook(self):
        """Delete the providers' webhook registrations at Vipps (best effort: Vipps
        removes an unresponsive one by itself after two weeks) and forget them."""
        for provider in self:
            provider_sudo = provider.sudo()
            try:
                provider._vipps_delete_webhook(provider_sudo.vipps_webhook_id)
            except VippsError as error:
                _logger.warning(
                    "Vipps webhook %s not deleted: %s",
                    provider_sudo.vipps_webhook_id,
                    error,
                )
            provider_sudo.write(
                {
                    "vipps_webhook_id": False,
                    "vipps_webhook_url": False,
                    "vipps_webhook_secret": False,
                }
            )

    @api.model
    def _cron_vipps_check_webhooks(self):
        """Daily: register again the webhooks Vipps no longer lists (it deletes one
        that stayed unresponsive for two weeks)."""
        providers = self.sudo().search(
            [("code", "=", "vipps"), ("state", "in", ("test", "enabled"))]
        )
        for provider in providers.filtered(lambda p: p._vipps_is_configured()):
            try:
                provider._vipps_ensure_webhook()
            except VippsError as error:
                _logger.warning(
                    "Vipps webhook of %s not checked: %s", provider.name, error
                )

    def _vipps_check_base_url(self):
        """Webhooks and return URLs need https: refuse another base URL, except a
        loopback address (the local emulator)."""
        self.ensure_one()
        url = self.get_base_url()
        host = (urls.url_parse(url).host or "").lower()
        if url.startswith("https://") or host in const.LOOPBACK_HOSTS:
            return
        raise ValidationError(
            self.env._(
                "Vipps MobilePay sends webhooks and customers back only to https "
                "addresses, and this database's address is %s. Set the web.base.url "
                "system parameter to the https address customers reach Odoo at.",
                url,
            )
        )

    def _vipps_register_webhook(self, url, events):
        """Register `url` for `events`; return {id, secret} (the secret comes once)."""
        return self._vipps_make_request(
            const.API_VERSION_PATHS["webhooks"],
            payload={"url": url, "events": list(events)},
        )

    def _vipps_list_webhooks(self):
        return self._vipps_make_request(
            const.API_VERSION_PATHS["webhooks"], method="GET"
        ).get("webhooks", [])

    def _vipps_delete_webhook(self, webhook_id):
        return self._vipps_make_request(
            f"{const.API_VERSION_PATHS['webhooks']}/{webhook_id}", method="DELETE"
        )

    # === BUSINESS METHODS - USERINFO API === #

    def _vipps_get_userinfo(self, sub):
        """Return what the customer agreed to share, for the `sub` of a payment.

        Sources disagree on whether the subscription key belongs on this call: send it,
        and on 401 try once without it.
        """
        endpoint = f"{const.API_VERSION_PATHS['userinfo']}/{sub}"
        try:
            return self._vipps_make_request(endpoint, method="GET")
        except VippsError as error:
            if error.status != 401:
                raise
            return self._vipps_make_request(
                endpoint,
                method="GET",
                extra_headers={"Ocp-Apim-Subscription-Key": None},
            )

    @api.model
    def _vipps_clear_token_cache(self):
        """Forget the tokens cached in this process (tests, credential changes)."""
        _TOKEN_CACHE.clear()


def _retry_after_seconds(response, default):
    try:
        return max(0.0, float(response.headers.get("Retry-After", default)))
    except ValueError:
        return default


def _uncertain(error):
    """Whether a failed write may still have been carried out by Vipps."""
    return isinstance(error, VippsUnreachableError) or (
        error.status in const.UNCERTAIN_STATUSES
    )


def _redirect_url(payment):
    return {"redirectUrl": payment["redirectUrl"]} if payment.get("redirectUrl") else {}
