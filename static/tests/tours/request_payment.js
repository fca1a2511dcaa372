/** @odoo-module */

import {registry} from "@web/core/registry";

// An accountant sends a posted invoice to the customer's Vipps app.
registry.category("web_tour.tours").add("payment_vipps_request_payment", {
  steps: () => [
    {
      content: "Click Request via Vipps on the invoice",
      trigger: ".o_form_view button[name='action_vipps_request_payment']",
      run: "click",
    },
    {
      content: "The wizard shows the customer's mobile number",
      trigger: ".modal .o_field_widget[name='line_ids'] td:contains('+47 91 23 45 67')",
    },
    {
      content: "The wizard previews the text the customer sees",
      trigger: ".modal .o_field_widget[name='line_ids'] td:contains('Invoice ')",
    },
    {
      content: "Send the request",
      trigger: ".modal button[name='action_send']",
      run: "click",
    },
    {
      content: "The invoice now shows the request as sent",
      trigger: ".o_form_view .o_field_widget[name='vipps_state']:contains('Requested')",
    },
  ],
});

// After the customer approved in the app, the invoice shows it paid.
registry.category("web_tour.tours").add("payment_vipps_invoice_paid", {
  steps: () => [
    {
      content: "The Vipps status is Paid",
      trigger: ".o_form_view .o_field_widget[name='vipps_state']:contains('Paid')",
    },
    {
      content: "The invoice itself is paid (ribbon)",
      trigger:
        ".o_form_view .ribbon:contains('Paid'), .o_form_view .ribbon:contains('In Payment')",
    },
  ],
});

// Send & Print, with "by Vipps MobilePay" as the customer's sending method.
registry.category("web_tour.tours").add("payment_vipps_send_and_print", {
  steps: () => [
    {
      content: "Open Send & Print",
      trigger: ".o_form_view button[name='action_invoice_sent']",
      run: "click",
    },
    {
      content: "By Vipps MobilePay is ticked: the customer's default",
      trigger: ".modal .o-checkbox:contains('by Vipps MobilePay') input:checked",
    },
    {
      content: "Send",
      trigger: ".modal button[name='action_send_and_print']:enabled",
      run: "click",
    },
    {
      content: "The invoice shows the request as sent",
      trigger: ".o_form_view .o_field_widget[name='vipps_state']:contains('Requested')",
    },
  ],
});
