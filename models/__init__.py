from . import account_move
from . import account_move_line
from . import account_move_send
from . import payment_provider
from . import payment_transaction
from . import payment_vipps_outbox
from . import payment_vipps_token
from . import res_partner
