{
    "name": "Payment Provider: Vipps MobilePay",
    "version": "18.0.1.0.0",
    "category": "Accounting/Payment Providers",
    "sequence": 350,
    "summary": "Send invoice payment requests to the Vipps and MobilePay apps.",
    "author": "payment_vipps contributors",
    "website": "https://github.com/payment-vipps/payment_vipps",
    "license": "LGPL-3",
    "depends": ["account_payment", "phone_validation"],
    "external_dependencies": {"python": ["phonenumbers"]},
    "data": [
        "security/ir.model.access.csv",
        "views/payment_provider_views.xml",
        "views/payment_vipps_templates.xml",
        "views/account_move_views.xml",
        "views/payment_vipps_request_wizard_views.xml",
        "views/res_partner_views.xml",
        # The provider record must exist before the post-init hook runs.
        "data/payment_provider_data.xml",
        "data/ir_cron_data.xml",
        "data/mail_template_data.xml",
    ],
    "assets": {
        "web.assets_tests": ["payment_vipps/static/tests/tours/*.js"],
    },
    "post_init_hook": "post_init_hook",
    "uninstall_hook": "uninstall_hook",
}
