"""A local, stateful emulator of the Vipps MobilePay APIs (standard library only).

Start it with ``python3 -m vipps_emulator --port 8123`` or in-process::

    from vipps_emulator import Emulator

    with Emulator(port=0) as emu:
        print(emu.url)

The package only uses relative imports, so it also works when imported as
``odoo.addons.payment_vipps.vipps_emulator``. See README.md.
"""

from .clock import Clock
from .config import APPROVED, ORDINARY, Merchant, Settings
from .emulator import Emulator
from .webhooks import sign, signing_target

__all__ = [
    "APPROVED",
    "ORDINARY",
    "Clock",
    "Emulator",
    "Merchant",
    "Settings",
    "sign",
    "signing_target",
]
__version__ = "1.0.0"
