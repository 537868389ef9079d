"""Which source and destination the console talks to, for the dashboard's connections block."""

from django import template

from migrations_app import connections

register = template.Library()


@register.simple_tag
def api_connections() -> list[connections.Connection]:
    return [connections.source(), connections.destination()]
