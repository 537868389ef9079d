import getpass
import secrets
import sys
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from migrations_app.staff_groups import STAFF_GROUPS, StaffUser, StaffUserError, ensure_staff_user

PROMPTS = 3
WHAT_THEY_DO = {"operators": "view and act", "auditors": "view only"}


class Command(BaseCommand):
    stealth_options = ("stdin",)
    help = (
        "Create a staff login in the operators group (view and act) or the auditors group (view "
        "only). The password is asked for, given with --password, or generated and printed once. "
        "Run again for an existing user, it only moves them into the group (and sets the password "
        "if one is given)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--group", required=True, choices=STAFF_GROUPS)
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument(
            "--password",
            help="the password (it stays in the shell's history: prefer the prompt)",
        )
        secret.add_argument(
            "--generate-password",
            action="store_true",
            help="a random password, printed once and stored only as a hash",
        )
        parser.add_argument("--email", default="", help="for a new user")

    def handle(
        self,
        *args: object,
        username: str,
        group: str,
        password: str | None,
        generate_password: bool,
        email: str,
        **options: Any,
    ) -> None:
        self.stdin = options.get("stdin") or sys.stdin  # a stand-in terminal in tests
        User = get_user_model()
        exists = User.objects.filter(**{User.USERNAME_FIELD: username}).exists()
        if generate_password:
            password = secrets.token_urlsafe(15)
        elif password is not None:
            self._check(password, username)
        elif not exists:
            password = self._ask(username)
        try:
            outcome = ensure_staff_user(username, group, password, email)
        except StaffUserError as error:
            raise CommandError(str(error)) from None
        if options["verbosity"] >= 1:
            self._report(outcome, group)
        if generate_password:
            # Always shown, whatever the verbosity: it is the only time anyone sees it.
            self.stdout.write(f"Password for {username} (shown once): {password}")

    def _check(self, password: str, username: str) -> None:
        try:
            validate_password(password, get_user_model()(username=username))
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None

    def _ask(self, username: str) -> str:
        if not (hasattr(self.stdin, "isatty") and self.stdin.isatty()):
            raise CommandError(
                "No terminal to ask for a password: "
                "pass --password PASSWORD or --generate-password."
            )
        for _ in range(PROMPTS):
            password = getpass.getpass(f"Password for {username}: ")
            if password != getpass.getpass("Password (again): "):
                self.stderr.write("The passwords do not match.")
                continue
            try:
                self._check(password, username)
            except CommandError as error:
                self.stderr.write(str(error))
                continue
            return password
        raise CommandError(f"No password set after {PROMPTS} tries; {username} was not created.")

    def _report(self, outcome: StaffUser, group: str) -> None:
        name = outcome.user.get_username()
        role = f"{group} ({WHAT_THEY_DO[group]})"
        if outcome.created:
            self.stdout.write(self.style.SUCCESS(f"Created {name} in {role}."))
        elif not outcome.changed:
            self.stdout.write(f"{name} already exists and is in {role}: nothing changed.")
        else:
            done = [f"{name} already existed"]
            if outcome.made_staff:
                done.append("made staff")
            if outcome.left:
                done.append(f"moved out of {', '.join(outcome.left)}")
            if outcome.joined:
                done.append(f"added to {role}")
            if outcome.password_changed:
                done.append("password changed")
            self.stdout.write(self.style.SUCCESS(", ".join(done) + "."))
        if not outcome.user.is_active:
            self.stderr.write(
                self.style.WARNING(f"{name} is inactive and cannot log in (see Users in /admin/).")
            )
