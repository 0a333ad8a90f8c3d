"""`python -m simulator --port P [--demo]`: run the simulator under uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from simulator.app import create_app
from simulator.demo import DEMO_ORDER_ID, seed_demo
from simulator.records import WebhookTarget
from simulator.state import SimulatorState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Autoenhance v3 API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every download request")
    parser.add_argument("--processing-seconds", type=float, default=0.0, help="time an upload takes to process")
    parser.add_argument("--max-concurrent-downloads", type=int, default=None, help="more answer 429")
    parser.add_argument("--api-key", action="append", dest="api_keys", help="accept only this key (repeatable)")
    parser.add_argument("--asset-base-url", default=None, help="serve assets and uploads from this origin")
    parser.add_argument("--webhook-url", default=None, help="POST Autoenhance's webhook events here")
    parser.add_argument("--webhook-token", default=None, help="authentication value sent with them (Authorization)")
    parser.add_argument(
        "--api-version", default=None,
        help="the account's API version, served without x-api-version (default: lenient, every upload-URL key)",
    )
    parser.add_argument("--demo", action="store_true", help=f"seed the demo order {DEMO_ORDER_ID}")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    state = SimulatorState(
        api_keys=set(args.api_keys) if args.api_keys else None,
        processing_seconds=args.processing_seconds,
        asset_base_url=args.asset_base_url,
        download_latency=args.latency,
        max_concurrent_downloads=args.max_concurrent_downloads,
        api_version=args.api_version,
    )
    if args.demo:
        seed_demo(state)
    if args.webhook_url:
        state.set_webhook(WebhookTarget(args.webhook_url, args.webhook_token))
    print(
        f"Autoenhance simulator on http://{args.host}:{args.port}"
        + (f" (demo order {DEMO_ORDER_ID})" if args.demo else "")
    )
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
