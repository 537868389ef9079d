from django.apps import AppConfig


class MigrationsAppConfig(AppConfig):
    name = "migrations_app"
    verbose_name = "Assistants → Conversations migration"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from migrations_app import checks, coverage, tallies  # noqa: F401  (checks registers)

        # The dashboard's counters: triggers put back after any migrate that lost them.
        post_migrate.connect(tallies.on_post_migrate, sender=self)
        post_migrate.connect(coverage.on_post_migrate, sender=self)
        # A django-q2 worker loads the engine (and the SDK) as it starts, before its first task;
        # other processes (commands, web) never need it.
        from django_q.signals import post_spawn

        post_spawn.connect(_load_engine, dispatch_uid="migrations_app.load_engine")


def _load_engine(sender: object, **kwargs: object) -> None:
    from migrations_app import openai_client, upload  # noqa: F401

    openai_client.destination_client()
    openai_client.source_client()
