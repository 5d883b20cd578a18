"""``python -m services.stack``: start the local stack and keep it up until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType

from services.stack.launcher import LocalStack, StackError
from services.stack.settings import StackSettings

logger = logging.getLogger("services.stack")


class Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT so that every start-up wait unwinds."""


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.stack",
        description="Start WineMeUp locally: runners, Redis, router, Prometheus, UI. "
        "Settings come from WINEMEUP_STACK_* variables; these flags override a few.",
    )
    parser.add_argument("--fast", action="store_true", help="train in fast mode if the store is empty")
    parser.add_argument("--inline", action="store_true", help="every model inline in the router (no runners)")
    parser.add_argument("--no-ui", action="store_true", help="do not start the Streamlit UI")
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    return parser.parse_args(argv)


def summary(stack: LocalStack) -> str:
    """What is running where, and a request to try."""
    lines = ["", "WineMeUp is up.", f"  router      {stack.router_url}  (docs: {stack.router_url}/docs)"]
    for model, url in stack.runner_urls.items():
        lines.append(f"  runner      {url}  {model}")
    if not stack.runner_urls:
        lines.append("  runners     none: every model runs inline in the router")
    lines.append(f"  cache       {stack.redis_note}")
    if stack.prometheus_url:
        lines.append(f"  prometheus  {stack.prometheus_url}")
    if stack.ui_url:
        lines.append(f"  ui          {stack.ui_url}")
    lines += [
        f"  logs        {stack.logs_dir}",
        f"  API key     {stack.api_key}",
        "",
        "Try:",
        f"  {stack.curl_example()}",
        "",
        f"A component that dies is restarted after {stack.settings.restart_backoff_seconds:g} s, "
        f"then twice as long each time in a row, up to {stack.settings.restart_backoff_max_seconds:g} s."
        if stack.supervisor is not None
        else "A component that dies stays down (WINEMEUP_STACK_RESTART=false).",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, object] = {}
    if args.fast:
        overrides["fast"] = True
    if args.inline:
        overrides["placement"] = "inline"
    if args.no_ui:
        overrides["ui"] = False
    if args.no_prometheus:
        overrides["prometheus"] = False
    settings = StackSettings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGINT, _raise_shutdown)
    stack = LocalStack(settings)
    reported: set[str] = set()
    try:
        stack.start()
        print(summary(stack), flush=True)
        while True:
            stack.supervise()  # restarts what died, with back-off, and logs it
            if stack.supervisor is None:
                for name in stack.dead():
                    if name not in reported:
                        reported.add(name)
                        logger.warning("%s exited; see %s/%s.log", name, stack.logs_dir, name)
            time.sleep(0.5)
    except Shutdown as e:
        logger.info("%s received: stopping", e)
        return 0
    except StackError as e:
        logger.error("%s", e)
        return 1
    finally:
        # A second Ctrl-C must not interrupt the clean-up itself.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
