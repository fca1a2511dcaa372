from . import payment_vipps_request_wizard
