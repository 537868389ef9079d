"""The request budgets (destination and source) for the dashboard's small budgets block."""

from django import template

from migrations_app import dashboard

register = template.Library()


@register.simple_tag
def request_budgets() -> list[dashboard.RequestRate]:
    return dashboard.request_rates()
