import contextlib
import signal
import threading
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from migrations_app.sandbox import SandboxServer, seeded_state
from migrations_app.sandbox.foundry import TOOL_TYPES


class Command(BaseCommand):
    help = (
        "Run the sandbox API on loopback: an Assistants source seeded with deterministic demo "
        "data and a Conversations destination, with faults on demand (POST /_sandbox/faults)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=settings.SANDBOX_PORT)
        parser.add_argument("--threads", type=int, default=200, help="demo threads to seed")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--latency-ms", type=float, default=0)
        parser.add_argument("--rpm-cap", type=int, default=0, help="requests per minute, 0 = none")
        for kind in ("rate-limit", "server-error", "drop-before-write", "drop-after-write"):
            parser.add_argument(f"--{kind}", type=float, default=0, help="probability 0–1")
        parser.add_argument(
            "--azure",
            action="store_true",
            help="answer as Azure's Foundry classic agents: api-version required on every request, "
            "an api-key header or a bearer (Entra ID) token, Foundry's tools in the data",
        )
        parser.add_argument(
            "--trickle",
            type=float,
            default=0,
            metavar="SECONDS",
            help="add an exchange (user message, run, tool call, reply) to a random thread every "
            "SECONDS while running (0 = never; also POST /_sandbox/trickle)",
        )
        parser.add_argument(
            "--trickle-tools",
            default=None,
            metavar="TYPES",
            help="comma-separated tool-call types the added exchanges take in turn (default: "
            "function; with --azure, function and each Foundry tool)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        azure = options["azure"]
        state = seeded_state(seed=options["seed"], thread_count=options["threads"], foundry=azure)
        state.configure_faults(
            latency_ms=options["latency_ms"],
            rpm_cap=options["rpm_cap"],
            rate_limit=options["rate_limit"],
            server_error=options["server_error"],
            drop_before_write=options["drop_before_write"],
            drop_after_write=options["drop_after_write"],
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with SandboxServer(port=options["port"], state=state, azure=azure) as sandbox:
            if options["trickle"] > 0:
                state.start_trickle(options["trickle"], self._trickle_tools(options))
            mode = ", Azure mode: api-version required" if azure else ""
            self.stdout.write(
                self.style.SUCCESS(
                    f"Sandbox API on {sandbox.url} ({len(state.threads)} threads{mode})"
                )
            )
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        self.stdout.write("Sandbox stopped.")

    def _trickle_tools(self, options: dict[str, Any]) -> list[str]:
        if options["trickle_tools"]:
            return [kind.strip() for kind in options["trickle_tools"].split(",") if kind.strip()]
        return ["function", *TOOL_TYPES] if options["azure"] else ["function"]
