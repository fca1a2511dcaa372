from odoo.tests import tagged

from .common import VippsHttpCommon

# Runs in a page: clicks the page's real button after ticking a checkbox, and lets
# the click's form post go through fetch (redirect not followed) so that the test
# learns the outcome before the page would navigate away.
CLICK_AND_POST = """
const tick = document.querySelector("%(checkbox)s");
if (tick) { tick.checked = true; }
const button = document.querySelector("%(button)s");
const form = button.form;
const phone = form.querySelector("input[name='phone']");
if (phone && !phone.value) { phone.value = "4741234567"; }
form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new URLSearchParams(new FormData(form, event.submitter));
    const response = await fetch(form.action, {
        method: "POST", body: data, redirect: "manual",
    });
    if (response.type === "opaqueredirect" || response.ok) {
        console.log("test successful");
    } else {
        console.error("the form post failed: " + response.status);
    }
});
button.click();
"""

FIND_IN_INBOX = """
const item = document.querySelector("li.request[data-reference='%s']");
if (item && item.dataset.state === "CREATED") {
    console.log("test successful");
} else {
    console.error("the push request is not in the app");
}
"""


@tagged("post_install", "-at_install")
class TestVippsCustomerTour(VippsHttpCommon):
    """Real Chromium: the customer's way through the pay page and the app, and the
    accountant's Send & Print."""

    vipps_merchant = "approved"

    def _browser(self, url, code):
        with self.server_turn():
            self.browser_js(url, code)

    def test_customer_pays_with_opt_in_then_gets_next_invoice_as_push(self):
        """Pay from the link with opt-in; the next invoice lands in the app."""
        customer = self.env["res.partner"].create(
            {"name": "Ingrid Solberg", "email": "ingrid@example.com"}
        )
        invoice = self.create_invoice(partner=customer)
        invoice._vipps_request_payment()  # no number: the pay link is e-mailed
        self._browser(
            invoice._vipps_pay_url(),
            CLICK_AND_POST
            % {"checkbox": "#vipps_share_phone", "button": "#vipps_pay_button"},
        )
        tx = invoice.transaction_ids
        payment = self.emulator.payment(tx.reference)
        self.assertEqual(payment.scopes, ["phoneNumber"])
        # In the app: share the number and approve.
        self._browser(
            f"{self.emulator.url}/app/landing?token={payment.token}",
            CLICK_AND_POST
            % {"checkbox": "input[name='consent']", "button": "button[name='approve']"},
        )
        self.wait_for_webhooks()
        self.assertEqual(tx.state, "done")
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        phone = customer.vipps_phone
        self.assertTrue(phone, msg="The shared number is kept.")
        # The next invoice arrives in the app as a push request.
        following = self.create_invoice(partner=customer)
        push = following._vipps_request_payment()
        self.assertEqual(push.vipps_user_flow, "PUSH_MESSAGE")
        self._browser(
            f"{self.emulator.url}/app/inbox?phone={phone.lstrip('+')}",
            FIND_IN_INBOX % push.reference,
        )

    def test_accountant_sends_by_vipps_from_send_and_print(self):
        """Send & Print with the customer's 'by Vipps MobilePay' default."""
        admin = self.env.ref("base.user_admin")
        admin.company_ids |= self.env.company
        admin.company_id = self.env.company
        self.env.company.external_report_layout_id = self.env.ref(
            "web.external_layout_standard"
        )
        self.customer.with_company(self.env.company).invoice_sending_method = "vipps"
        invoice = self.create_invoice()
        with self.server_turn():
            self.start_tour(
                f"/odoo/action-account.action_move_out_invoice_type/{invoice.id}",
                "payment_vipps_send_and_print",
                login="admin",
            )
        self.assertEqual(invoice.vipps_state, "pending")
