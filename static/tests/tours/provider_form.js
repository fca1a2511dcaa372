/** @odoo-module */

import {registry} from "@web/core/registry";

// The provider form shows the Vipps credentials (secrets masked) and the technical
// API URL override to an administrator, and saves what is typed.
registry.category("web_tour.tours").add("payment_vipps_provider_form", {
  steps: () => [
    {
      content: "Open the Credentials tab",
      trigger: ".o_notebook a[name='credentials']",
      run: "click",
    },
    {
      content: "The client secret is a password field",
      trigger: "div[name='vipps_client_secret'] input[type='password']",
    },
    {
      content: "The subscription key is a password field",
      trigger: "div[name='vipps_subscription_key'] input[type='password']",
    },
    {
      content: "Type a new merchant serial number",
      trigger: "div[name='vipps_merchant_serial_number'] input",
      run: "edit 654321",
    },
    {
      content: "Type a new client secret",
      trigger: "div[name='vipps_client_secret'] input",
      run: "edit new-secret",
    },
    {
      content: "Point the provider at the local emulator",
      trigger: "div[name='vipps_api_url_override'] input",
      run: "edit http://127.0.0.1:8077",
    },
    // Saved as stepUtils.saveForm() does; its module moved in 19.0.
    {
      content: "Save the provider",
      trigger: ".o_form_button_save:enabled",
      run: "click",
    },
    {
      content: "Wait until it is saved",
      trigger: ".o_form_readonly, .o_form_saved",
    },
  ],
});
