from odoo.tests import HttpCase, tagged

from .. import const
from .common import VippsInvoiceCommon


@tagged("post_install", "-at_install")
class TestVippsOrderDetails(VippsInvoiceCommon, HttpCase):
    """The invoice page that the Vipps app links to (orderDetailsUrl)."""

    def _open(self, invoice, token):
        url = f"{const.ORDER_DETAILS_ROUTE}/{invoice.id}"
        if token is not None:
            url += f"?access_token={token}"
        return self.url_open(url)

    def test_page_shows_invoice_with_token(self):
        """With the invoice's token the page shows number, lines, totals and PDF."""
        invoice = self.create_invoice()
        invoice._portal_ensure_token()
        response = self._open(invoice, invoice.access_token)
        self.assertEqual(response.status_code, 200)
        page = response.text
        self.assertIn(invoice.name, page)
        self.assertIn("Plumbing work", page)
        self.assertIn('id="vipps_amount_due"', page)
        self.assertIn(f"/my/invoices/{invoice.id}?", page, msg="PDF download link")
        self.assertIn("report_type=pdf", page)
        self.assertIn('name="viewport"', page, msg="Made for phones.")

    def test_wrong_or_missing_token_shows_nothing(self):
        """A tampered or missing token gets a 404 that reveals nothing."""
        invoice = self.create_invoice()
        invoice._portal_ensure_token()
        for token in ("not-the-token", "", None):
            response = self._open(invoice, token)
            self.assertEqual(response.status_code, 404, msg=f"token {token!r}")
            self.assertNotIn(invoice.name, response.text)
            self.assertNotIn("Kari Nordmann", response.text)

    def test_other_invoice_token_refused(self):
        """One invoice's token does not open another invoice."""
        first, second = self.create_invoice(), self.create_invoice()
        first._portal_ensure_token()
        response = self._open(second, first.access_token)
        self.assertEqual(response.status_code, 404)
        self.assertNotIn(second.name, response.text)
