"""Command line: ``python3 -m vipps_emulator --port 8123``.

Serves until interrupted (Ctrl-C or SIGTERM). The first line written to
standard output is the base URL, so scripts can wait for it.
"""

import argparse
import logging
import os
import signal
import sys

from . import config
from .emulator import Emulator


def _bool_flag(parser, name, default, help_text):
    group = parser.add_mutually_exclusive_group()
    dest = name.replace("-", "_")
    group.add_argument(f"--{name}", dest=dest, action="store_true", help=help_text)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false")
    parser.set_defaults(**{dest: default})


def build_parser():
    """Return the argument parser."""
    parser = argparse.ArgumentParser(
        prog="python3 -m vipps_emulator",
        description="Local, stateful emulator of the Vipps MobilePay APIs.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    add("--port", type=int, default=8123, help="port to bind; 0 = any free (8123)")
    add("--public-url", help="base URL written into redirectUrl (default: own URL)")
    add("--merchant-serial-number", "--msn", default=config.DEFAULT_MSN)
    add("--client-id", default=config.DEFAULT_CLIENT_ID)
    add("--client-secret", default=config.DEFAULT_CLIENT_SECRET)
    add("--subscription-key", default=config.DEFAULT_SUBSCRIPTION_KEY)
    add("--merchant-name", default=config.DEFAULT_MERCHANT_NAME)
    add(
        "--currency",
        default="NOK",
        choices=config.CURRENCIES + config.OPTIONAL_CURRENCIES,
        help="the sales unit's currency; others are refused with 5040 (NOK)",
    )
    add(
        "--market",
        choices=sorted(config.MARKETS),
        help="the sales unit's country; sets --currency (NO=NOK, DK=DKK, FI=EUR, "
        "SE=SEK)",
    )
    add(
        "--approved",
        action="store_true",
        help="a sales unit Vipps approved for long-living payments (expiresAt up "
        f"to {config.APPROVED_LONG_LIVING_MAX_DAYS} days) and PUSH_MESSAGE; without "
        "it, an ordinary one that gets 5050 and 5080",
    )
    add(
        "--long-living-max-days",
        type=int,
        help="furthest expiresAt in days; 0 = not approved, 5050 (0; "
        f"{config.APPROVED_LONG_LIVING_MAX_DAYS} with --approved)",
    )
    _bool_flag(
        parser,
        "push-allowed",
        None,
        "allow PUSH_MESSAGE (default: only with --approved; else 5080)",
    )
    add(
        "--no-push",
        dest="push_allowed",
        action="store_false",
        help="= --no-push-allowed",
    )
    _bool_flag(parser, "partial-capture", True, "allow partial capture (else 6140)")
    add(
        "--token-ttl",
        type=int,
        default=config.DEFAULT_TOKEN_TTL,
        help="access token lifetime in seconds (3600)",
    )
    add(
        "--not-vipps-user",
        action="append",
        default=[],
        metavar="PHONE",
        help="a phone number that gets 7010 (repeatable); numbers ending in "
        "--not-user-suffix get it too",
    )
    add("--not-user-suffix", default="0000", help="see --not-vipps-user (0000)")
    add(
        "--http-host",
        action="append",
        metavar="HOST",
        help="host allowed in plain http:// URLs (repeatable; default: loopback)",
    )
    add(
        "--webhook-retry-delays",
        default="1,5,15,60,300",
        help="seconds between webhook attempts, comma-separated (1,5,15,60,300)",
    )
    add(
        "--reference-exists-status",
        type=int,
        choices=(400, 409),
        default=409,
        help="HTTP status of 4150 'reference already exists', which Vipps does "
        "not document (409)",
    )
    add(
        "--sub-delay",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="profile.sub is written this long after approval (emulator clock); "
        "0 = at once (3)",
    )
    add(
        "--user-details-at-once",
        action="store_true",
        help="show userDetails on Get payment at approval, before profile.sub",
    )
    add(
        "--no-user-details-on-get",
        dest="user_details_on_get",
        action="store_false",
        help="Get payment carries profile.sub only, as the published spec (the "
        "shared data is then read from Userinfo)",
    )
    add(
        "--brand-switch-date",
        default=config.BRAND_SWITCH_DATE,
        metavar="YYYY-MM-DD",
        help="the day MobilePay becomes Vipps in Denmark and Finland "
        f"({config.BRAND_SWITCH_DATE})",
    )
    add(
        "--webhook-removal-after",
        type=float,
        default=14 * 86400.0,
        metavar="SECONDS",
        help="delete a webhook registration whose deliveries have failed this "
        "long (emulator clock); 0 = never (1209600, two weeks)",
    )
    _bool_flag(
        parser,
        "receipt-sum-check",
        True,
        "require receipt lines to add up to the amount",
    )
    add(
        "--max-body-bytes",
        type=int,
        default=1024 * 1024,
        help="largest request body on any path, 413 above it (1048576); image "
        "uploads may be larger",
    )
    add(
        "--control-allow-remote",
        action="store_true",
        help="let the control API (/_emulator) answer clients that are not on "
        "loopback; best with --control-token",
    )
    add(
        "--control-token",
        default=os.environ.get("VIPPS_EMULATOR_CONTROL_TOKEN"),
        metavar="TOKEN",
        help="require this X-Emulator-Token header on control requests "
        "(default: $VIPPS_EMULATOR_CONTROL_TOKEN, else none)",
    )
    add("--verbose", "-v", action="store_true", help="log every request")
    return parser


def main(argv=None):
    """Run the emulator until interrupted."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    options = {
        "merchant_serial_number": args.merchant_serial_number,
        "client_id": args.client_id,
        "client_secret": args.client_secret,
        "subscription_key": args.subscription_key,
        "merchant_name": args.merchant_name,
        "currency": config.MARKETS[args.market] if args.market else args.currency,
        "approved": args.approved,
        "partial_capture_allowed": args.partial_capture,
        "token_ttl": args.token_ttl,
        "not_vipps_users": args.not_vipps_user,
        "not_user_suffix": args.not_user_suffix,
        "receipt_sum_must_match": args.receipt_sum_check,
        "webhook_retry_delays": [
            float(d) for d in args.webhook_retry_delays.split(",") if d.strip()
        ],
        "public_url": args.public_url,
        "reference_exists_status": args.reference_exists_status,
        "sub_delay": args.sub_delay,
        "webhook_removal_after": args.webhook_removal_after,
        "brand_switch_date": args.brand_switch_date,
        "max_body_bytes": args.max_body_bytes,
        "control_remote": args.control_allow_remote,
        "control_token": args.control_token or None,
        "user_details_delayed": not args.user_details_at_once,
        "user_details_on_get": args.user_details_on_get,
    }
    if args.http_host:
        options["http_hosts"] = args.http_host
    if args.long_living_max_days is not None:
        options["long_living_max_days"] = args.long_living_max_days
    if args.push_allowed is not None:
        options["push_allowed"] = args.push_allowed
    try:
        emulator = Emulator(args.host, args.port, **options)
        emulator.start()
    except (ValueError, OSError) as err:
        sys.stderr.write(f"vipps_emulator: {err}\n")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: emulator.stopping.set())
    sys.stdout.write(f"{emulator.url}\n")
    merchant = emulator.merchant
    push = "allowed" if merchant.push_allowed else "not approved"
    days = merchant.long_living_max_days
    expiry = f"up to {days} days" if days else "not approved"
    sys.stdout.write(
        f"Vipps MobilePay emulator for MSN {merchant.msn} ({merchant.currency}; "
        f"PUSH_MESSAGE {push}; expiresAt {expiry}); "
        f"app inbox: {emulator.url}/app/inbox\n"
    )
    sys.stdout.flush()
    emulator.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
