"""The dashboard's block about the applications' side: conversations lost at the destination,
the retention watchdog's last run, and continuation readiness."""

from typing import Any

from django import template

from migrations_app import dashboard, readiness, watchdog

register = template.Library()


@register.simple_tag
def applications_side() -> dict[str, Any]:
    watch = watchdog.figures()
    ready = readiness.figures()
    label = dashboard.threads_label
    return {
        "watch": watch,
        "ready": ready,
        "lost_label": label(watch.lost, 10**12),
        "overdue_label": label(watch.overdue, watchdog.COUNTED_UP_TO).replace(
            "thread", "conversation"
        ),
        "exceeding_label": label(ready.exceeding, readiness.COUNTED_UP_TO),
        "uncounted_label": label(ready.uncounted, readiness.COUNTED_UP_TO).replace(
            "thread", "conversation"
        ),
        "retirements": [
            {
                "line": line,
                "label": label(line.threads, readiness.COUNTED_UP_TO),
                "phrase": line.retirement.phrase(),
            }
            for line in ready.retirements
        ],
    }
