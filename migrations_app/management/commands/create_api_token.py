from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from migrations_app import api_tokens


class Command(BaseCommand):
    help = (
        "Create a lookup API token for an application and print it once (only its hash is "
        "kept: a lost token is revoked in the admin and a new one created)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("application", help="the application's name, e.g. 'Support widget'")
        parser.add_argument(
            "--prioritize-on-lookup",
            action="store_true",
            help="queue a thread this application looks up ahead of the rest, if not migrated",
        )
        parser.add_argument(
            "--requests-per-minute",
            type=int,
            default=settings.API_TOKEN_REQUESTS_PER_MINUTE,
            help="the token's rate limit (default: API_TOKEN_REQUESTS_PER_MINUTE, "
            f"{settings.API_TOKEN_REQUESTS_PER_MINUTE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["requests_per_minute"] < 1:
            raise CommandError("--requests-per-minute must be at least 1.")
        try:
            token, raw = api_tokens.create_token(
                options["application"],
                prioritize_on_lookup=options["prioritize_on_lookup"],
                requests_per_minute=options["requests_per_minute"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stderr.write(
            f"Token for {token.application} ({token.requests_per_minute} requests a minute"
            + (", prioritize on lookup" if token.prioritize_on_lookup else "")
            + "). It is shown this once; keep it in the application's secrets:"
        )
        self.stdout.write(raw)
