from django.apps import AppConfig


class MigrationsAppConfig(AppConfig):
    name = "migrations_app"
    verbose_name = "Assistants → Conversations migration"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate
        from django_q.signals import post_spawn

        from migrations_app import checks, coverage, tallies, workers  # noqa: F401  (checks registers)

        # The dashboard's counters: triggers put back after any migrate that lost them.
        post_migrate.connect(tallies.on_post_migrate, sender=self)
        post_migrate.connect(coverage.on_post_migrate, sender=self)
        post_migrate.connect(ensure_sweeper_schedule, sender=self)
        # A django-q2 worker loads the engine (and the SDK) as it starts, before its first task,
        # and offers to run the sweeper; other processes (commands, web) never need them.
        post_spawn.connect(workers.on_worker_started, dispatch_uid="migrations_app.worker_started")


SWEEPER = "migrations_app.tasks.sweep_stuck_threads"


def ensure_sweeper_schedule(sender: object, **kwargs: object) -> None:
    """The sweeper's django-q2 schedule, the fallback to the workers' own offers: recreated at
    every migrate if it was deleted."""
    from django_q.models import Schedule

    Schedule.objects.get_or_create(
        func=SWEEPER,
        defaults={"name": "Resume threads whose worker died", "schedule_type": Schedule.MINUTES,
                  "minutes": 1, "repeats": -1},
    )  # fmt: skip
