from . import test_client
from . import test_order_details
from . import test_payment_request
from . import test_provider
from . import test_provider_form
from . import test_tour
from . import test_uninstall
from . import test_webhook
