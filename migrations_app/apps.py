from django.apps import AppConfig


class MigrationsAppConfig(AppConfig):
    name = "migrations_app"
    verbose_name = "Assistants → Conversations migration"

    def ready(self) -> None:
        from migrations_app import checks  # noqa: F401  (registers the system checks)
