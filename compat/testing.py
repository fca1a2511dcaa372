"""What differs between 18.0 and 19.0 in Odoo's test tools (imported by tests only).

Both series make cursors opened by the code under test (the token store, the HTTP
server's threads) join the test's transaction, one thread at a time, behind a lock:
- 18.0 keeps the cursor and lock on the registry (`enter_test_mode`, `test_lock`),
  and the test thread takes the lock when it wants it;
- 19.0 patches the registry (`registry_enter_test_mode_cls`), the test thread holds
  a module-wide lock from the start and releases it around its own requests, and a
  request without the test's cookie is refused, as the emulator's webhooks are
  unless the test allows every request.
"""

from contextlib import contextmanager
from unittest.mock import patch

from . import ODOO_19

if ODOO_19:
    from odoo.tests import common as odoo_common


def registry_installing(dbname, modules):
    """The registry of `dbname` with `modules` installed, for a script that runs
    Odoo itself; 18.0 installs what the configuration's ``-i`` names, which the
    script gives too."""
    from odoo.modules.registry import Registry

    if ODOO_19:
        return Registry.new(dbname, update_module=True, install_modules=modules)
    return Registry.new(dbname, update_module=True)


def enter_test_mode(cls):
    """Put the registry of test class `cls` in test mode, as HttpCase does."""
    if ODOO_19:
        if not cls._registry_patched:
            cls.registry_enter_test_mode_cls()
    elif cls.registry.test_cr is None:
        cls.registry.enter_test_mode(cls.cr)
        cls.addClassCleanup(cls.registry.leave_test_mode)


def share_with_server(case):
    """From setUp on: the test's own thread alone uses the transaction, and the
    server's threads wait for their turn (`server_turn`), whoever sent the request.
    The emulator's webhooks come at any moment, without the test's cookie."""
    if ODOO_19:  # the test thread holds the lock already
        patcher = patch.object(case, "http_request_allow_all", True)
        patcher.start()
        case.addCleanup(patcher.stop)
    else:
        case.registry.test_lock.acquire()
        case.addCleanup(case.registry.test_lock.release)


@contextmanager
def server_turn(case):
    """Let the server's threads use the transaction while the test waits (for the
    browser, the emulator, a `requests` call)."""
    if not ODOO_19:
        case.registry.test_lock.release()
        try:
            yield
        finally:
            case.registry.test_lock.acquire()
        return
    lock = odoo_common._registry_test_lock
    release = odoo_common.release_test_lock

    @contextmanager
    def release_if_held():
        # Odoo's own request helpers release the lock too: not a second time.
        if lock._is_owned():
            with release():
                yield
        else:
            yield

    with patch.object(odoo_common, "release_test_lock", release_if_held), release():
        yield
