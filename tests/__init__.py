from . import test_provider
from . import test_provider_form
from . import test_uninstall
