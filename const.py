"""Constants of the Vipps MobilePay integration: hosts, currencies, payment methods."""

# Vipps has one host per environment for every API (ePayment, Order Management, ...).
API_URLS = {
    "test": "https://apitest.vipps.no",
    "enabled": "https://api.vipps.no",
}

# The currency is fixed by the market of the sales unit: NOK for Vipps (Norway), DKK and
# EUR for MobilePay (Denmark, Finland).
SUPPORTED_CURRENCIES = ("NOK", "DKK", "EUR")

# Odoo's own payment methods (module `payment`) that this provider offers.
DEFAULT_PAYMENT_METHOD_CODES = {"vipps", "mobile_pay"}
