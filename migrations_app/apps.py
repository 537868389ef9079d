from django.apps import AppConfig


class MigrationsAppConfig(AppConfig):
    name = "migrations_app"
    verbose_name = "Assistants → Conversations migration"

    def ready(self):
        from django.db.models.signals import post_migrate

        from migrations_app import checks, tallies  # noqa: F401  (checks registers itself)

        # The dashboard's counters: triggers put back after any migrate that lost them.
        post_migrate.connect(tallies.on_post_migrate, sender=self)
