"""The permission ladder: every admin URL and every admin action, for every persona.

Generated, not hand-listed: the URLs come from the URL conf (the admin site's own and each
registered ModelAdmin's, real ids filled in from a small world of objects), the actions from each
registered ModelAdmin. Each needs a rung below saying what each persona gets; a new URL or action
without one fails the test with its name, so a new page cannot ship unexamined.

    anonymous                  → redirected to the login page
    staff without permissions  → 403, or not shown (404, not offered)
    auditor (group auditors)   → reads: GET ok, no acting button or form offered, every forged
                                 POST refused and nothing in the database changed
    operator (group operators) → reads and acts
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission, User
from django.db import connection, models
from django.http import HttpResponseBase
from django.test import Client, override_settings
from django.urls import reverse

from migrations_app.admin.threads import VALID_BUTTONS
from migrations_app.models import ApiToken, Assistant, Thread
from migrations_app.sandbox import SandboxServer, seeded_state
from tests import personas
from tests.admin_pages import (
    LEGACY_REDIRECT,
    AdminPattern,
    World,
    admin_patterns,
    build_world,
    registered_models,
)

pytestmark = pytest.mark.django_db

ANONYMOUS = "anonymous"
NO_PERMISSIONS = "staff without permissions"
AUDITOR = "auditor"
OPERATOR = "operator"
STAFF = (NO_PERMISSIONS, AUDITOR, OPERATOR)
PERSONAS = (ANONYMOUS, *STAFF)
LOGIN = "login page"  # a redirect to the admin's login page

# The policy, stated here rather than read from the code under test: operators and auditors see
# the console's records and the task queue's; nobody below superuser sees users or groups.
VIEWABLE_APPS = {
    NO_PERMISSIONS: set(),
    AUDITOR: {"migrations_app", "django_q"},
    OPERATOR: {"migrations_app", "django_q"},
}

Expectation = dict[str, int | str]


def every(status: int, anonymous: int | str = LOGIN) -> Expectation:
    return {ANONYMOUS: anonymous, **dict.fromkeys(STAFF, status)}


VIEWERS = {ANONYMOUS: LOGIN, NO_PERMISSIONS: 403, AUDITOR: 200, OPERATOR: 200}
OPERATORS = {ANONYMOUS: LOGIN, NO_PERMISSIONS: 403, AUDITOR: 403, OPERATOR: 200}


@dataclass(frozen=True)
class Rung:
    """What each persona gets from GET, and what a forged POST must do.

    post = "refused": anonymous → login page; staff → 403; nothing changes.
           "operator acts": the same, except that an operator's POST acts (a redirect, and the
               database changed).
           "harmless": the view does not act on a POST (it renders, or it is the user's own
               session or password with an empty form): nothing changes, no server error.
    """

    get: Expectation | Callable[[str], Expectation]
    post: str = "refused"
    forms_allowed: bool = False  # a self-service page (password change) may offer its form

    def expected_get(self, url: str) -> Expectation:
        return self.get(url) if callable(self.get) else self.get


def app_index(url: str) -> Expectation:
    label = url.rstrip("/").rsplit("/", 1)[-1]
    return {ANONYMOUS: LOGIN, **{p: 200 if label in VIEWABLE_APPS[p] else 404 for p in STAFF}}


# The site's own pages and every custom page; keyed by URL name (or route when unnamed).
LADDER: dict[str, Rung] = {
    "admin:index": Rung(every(200), post="harmless"),
    "admin:login": Rung(every(302, anonymous=200), post="harmless"),
    "admin:logout": Rung(every(405, anonymous=302), post="harmless"),  # POST: own session
    "admin:password_change": Rung(every(200), post="harmless", forms_allowed=True),
    "admin:password_change_done": Rung(every(200), post="harmless"),
    "admin:autocomplete": Rung(every(403), post="harmless"),  # no autocomplete fields
    "admin:jsi18n": Rung(every(200), post="harmless"),
    "admin:view_on_site": Rung(every(404), post="harmless"),  # no model has a public URL
    "admin:app_list": Rung(app_index, post="harmless"),
    "(?P<url>.*)$": Rung(every(404), post="harmless"),  # the catch-all: unknown admin pages
    "admin:migrations_app_dashboard": Rung(VIEWERS),
    "admin:migrations_app_thread_mapping": Rung(VIEWERS),
    "admin:migrations_app_thread_coverage_csv": Rung(VIEWERS),
    "admin:migrations_app_thread_act": Rung(every(403), post="operator acts"),
    "admin:migrations_app_importbatch_import": Rung(OPERATORS, post="operator acts"),
    # The next step of a batch's cutover, confirmed first: operators only.
    "admin:migrations_app_importbatch_cutover": Rung(OPERATORS, post="operator acts"),
    # Sync is a POST-only button on the Assistants list; operators sync (the sandbox answers).
    "admin:migrations_app_assistant_sync": Rung(every(403), post="operator acts"),
    "admin:auth_user_password_change": Rung(every(403)),
    # An application's API token: a confirmation page, then the revocation (POST).
    "admin:migrations_app_apitoken_revoke": Rung(OPERATORS, post="operator acts"),
}

# Models whose own views are not read-only for everybody: operators create API tokens (shown
# once) and change their rate and priority; viewers read them; nobody deletes one (revoked).
MODEL_RUNGS: dict[tuple[type[models.Model], str], Rung] = {
    (ApiToken, "add"): Rung(OPERATORS, post="operator acts"),
    (ApiToken, "change"): Rung(VIEWERS, post="operator acts"),
}


def standard_rung(pattern: AdminPattern) -> Rung:
    """A ModelAdmin's own views: viewers read changelist, change and history; nobody below
    superuser adds, edits or deletes anything (records are read-only, users are not ours),
    except where MODEL_RUNGS says otherwise."""
    if (pattern.model, pattern.kind) in MODEL_RUNGS:
        return MODEL_RUNGS[(pattern.model, pattern.kind)]
    app = pattern.model._meta.app_label
    if pattern.kind in ("changelist", "change", "history"):
        get = {ANONYMOUS: LOGIN, **{p: 200 if app in VIEWABLE_APPS[p] else 403 for p in STAFF}}
        # A changelist's POSTs are its actions: ACTION_LADDER below. A history only renders.
        return Rung(get, post="refused" if pattern.kind == "change" else "harmless")
    if pattern.kind == "redirect":
        return Rung(every(302), post="harmless")
    return Rung(every(403))  # add, delete


def rung_for(pattern: AdminPattern) -> Rung:
    if pattern.kind is not None:
        return standard_rung(pattern)
    if pattern.key not in LADDER:
        pytest.fail(
            f"The admin URL {pattern.key!r} ({pattern.route}) has no rung on the permission "
            "ladder: add it to LADDER in tests/test_permissions.py, saying what each persona gets."
        )
    return LADDER[pattern.key]


# --- helpers ------------------------------------------------------------------------------------
def database_rows() -> dict[str, str]:
    """A fingerprint of every row of every table (sessions aside: logging in and out is not a
    change to the console), in one query, by table name (a UNION ALL's rows come in no set
    order: PostgreSQL may run its branches as a parallel append once the tables grow)."""
    tables = [t for t in connection.introspection.table_names() if t != "django_session"]
    quote = connection.ops.quote_name
    sql = " UNION ALL ".join(
        f"SELECT %s, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
        f"FROM {quote(table)} t"
        for table in tables
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, tables)
        return dict(cursor.fetchall())


def outcome(response: HttpResponseBase) -> int | str:
    if response.status_code == 302 and response["Location"].startswith(reverse("admin:login")):
        return LOGIN
    return response.status_code


class _Forms(HTMLParser):
    """The forms of a page: id, method, action, the actions its action menu offers, inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._in_action_menu = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = {
                "id": a.get("id", ""),
                "method": (a.get("method") or "get").lower(),
                "action": a.get("action", ""),
                "offers": [],
                "inputs": [],
                "submits": 0,
            }
            self.forms.append(self._form)
        elif self._form is not None:
            if tag in ("input", "button", "textarea", "select"):
                self._form["inputs"].append(a.get("name", ""))
            if (tag == "input" and a.get("type") in ("submit", "image")) or (
                tag == "button" and a.get("type", "submit") == "submit"
            ):
                self._form["submits"] += 1
            if tag == "select" and a.get("name") == "action":
                self._in_action_menu = True
            if tag == "option" and self._in_action_menu and a.get("value"):
                self._form["offers"].append(a["value"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._in_action_menu = False


READ_ONLY_ACTIONS = {"preview_selected"}


def acting_controls(html: str) -> list[str]:
    """What a page offers that would act: any POST form with a submit button but the logout form
    and a changelist whose action menu offers only read-only actions; add and delete links. (A
    view-only change form is a POST form without a submit button: nothing to press.)"""
    parser = _Forms()
    parser.feed(html)
    found = []
    for form in parser.forms:
        if form["method"] != "post" or form["id"] == "logout-form" or not form["submits"]:
            continue
        if form["id"] == "changelist-form":
            editable = [n for n in form["inputs"] if n.startswith("form-") or n == "_save"]
            acting = set(form["offers"]) - READ_ONLY_ACTIONS
            if not editable and not acting:
                continue
            found.append(f"changelist form offering {sorted(acting)} {editable}")
            continue
        found.append(f"a POST form {form['id'] or form['action'] or '(no id)'}")
    for link in ("addlink", "deletelink"):
        if f'class="{link}"' in html:
            found.append(f"an {link}")
    return found


def client_for(persona: str, users: dict[str, User]) -> Client:
    client = Client()
    if persona != ANONYMOUS:
        client.force_login(users[persona])
    return client


@pytest.fixture(scope="module")
def source_api() -> Iterator[None]:
    """One sandbox for the module: the pages that read the source (Sync assistants) get an
    answer, so an operator's POST really acts."""
    server = SandboxServer(state=seeded_state(seed=3, thread_count=2))
    pointed = override_settings(
        SANDBOX_URL=server.url, OPENAI_API_KEY=None, ASSISTANTS_API_KEY=None,
        OPENAI_BASE_URL=None, ASSISTANTS_BASE_URL=None,
    )  # fmt: skip
    with server, pointed:
        yield


@pytest.fixture
def world(source_api: None) -> World:
    return build_world()


@pytest.fixture
def users() -> dict[str, User]:
    return {
        NO_PERMISSIONS: personas.staff_without_permissions(),
        AUDITOR: personas.auditor(),
        OPERATOR: personas.operator(),
    }


def thread_offering(
    button: str, world: World, users: dict[str, User], taken: set[int] = frozenset()
) -> Thread:
    """A thread of the world whose page offers the operator this button (not one of `taken`:
    the buttons act in turn, and one could move another's thread on)."""
    client = client_for(OPERATOR, users)
    for thread in world.threads:
        if thread.pk in taken:
            continue
        url = reverse("admin:migrations_app_thread_change", args=[thread.pk])
        if f'name="button-{button}"' in client.get(url).text:
            return thread
    pytest.fail(f"No thread of the ladder's world offers the {button!r} button: add one.")


def urls_of(pattern: AdminPattern, world: World, users: dict[str, User]) -> list[str]:
    if pattern.key == "admin:migrations_app_thread_act":
        taken: set[int] = set()
        urls = []
        for name in VALID_BUTTONS:
            thread = thread_offering(name, world, users, taken)
            if name != "fetch":  # a fetch queues a task; the thread's state stays as it is
                taken.add(thread.pk)
            urls.append(reverse(pattern.key, args=[thread.pk, name]))
        return urls
    return world.urls(pattern)


POST_DATA = {
    "admin:migrations_app_thread_act": {"post": "yes"},
    "admin:migrations_app_importbatch_cutover": {"post": "yes"},
    "admin:migrations_app_importbatch_import": {"pasted": "thread_ForgedImport0000000001"},
}


MODEL_POST_DATA = {
    (ApiToken, "add"): {"application": "Forged app", "requests_per_minute": "60", "_save": "Save"},
    (ApiToken, "change"): {"requests_per_minute": "61", "_save": "Save"},
}


def post_data(pattern: AdminPattern) -> dict:
    if (pattern.model, pattern.kind) in MODEL_POST_DATA:
        return MODEL_POST_DATA[(pattern.model, pattern.kind)]
    if pattern.kind == "delete":
        return {"post": "yes"}
    if pattern.kind == "change":
        return {"name": "changed", "status": "succeeded", "_save": "Save"}
    return POST_DATA.get(pattern.key, {})


def check_post(
    persona: str, client: Client, url: str, pattern: AdminPattern, rung: Rung
) -> list[str]:
    before = database_rows()
    response = client.post(url, post_data(pattern))
    after = database_rows()
    changed = [table for table, old in before.items() if after[table] != old]
    got = outcome(response)
    if rung.post == "harmless":
        if response.status_code >= 500 or changed:
            return [f"POST {url} as {persona}: {got}, database changed: {changed}"]
        return []
    acts = rung.post == "operator acts" and persona == OPERATOR
    if acts:
        if got != 302 or not changed:
            return [f"POST {url} as operator should act: got {got}, database changed: {changed}"]
        return []
    refused = LOGIN if persona == ANONYMOUS else 403
    if got != refused or changed:
        return [f"forged POST {url} as {persona}: got {got} (want {refused}), changed: {changed}"]
    return []


# --- the ladder: URLs ---------------------------------------------------------------------------
PATTERNS = admin_patterns()
APP_LABELS = sorted({model._meta.app_label for model in registered_models()})


@pytest.mark.parametrize("pattern", PATTERNS, ids=str)
def test_every_admin_url_answers_each_persona_as_the_ladder_says(pattern, world, users):
    rung = rung_for(pattern)
    problems = []
    for url in urls_of(pattern, world, users):
        expected = rung.expected_get(url)
        for persona in PERSONAS:
            client = client_for(persona, users)
            response = client.get(url)
            if outcome(response) != expected[persona]:
                problems.append(
                    f"GET {url} as {persona}: got {outcome(response)}, "
                    f"the ladder says {expected[persona]}"
                )
            elif (
                persona == AUDITOR
                and response.status_code == 200
                and not response.streaming
                and not rung.forms_allowed
            ):
                offered = acting_controls(response.text)
                if offered:
                    problems.append(f"GET {url} offers the auditor {offered}")
            elif persona == NO_PERMISSIONS and response.status_code == 200:
                shown = [label for label in APP_LABELS if f'href="/admin/{label}/' in response.text]
                if shown:
                    problems.append(f"GET {url} shows staff without permissions {shown}")
            problems += check_post(persona, client, url, pattern, rung)
    assert not problems, "\n".join(problems)


def test_the_ladder_names_only_urls_that_exist():
    keys = {pattern.key for pattern in PATTERNS}
    assert not set(LADDER) - keys, "rungs for URLs that no longer exist: remove them"


def test_every_registered_model_has_its_standard_views_on_the_ladder():
    for model in registered_models():
        kinds = {p.kind for p in PATTERNS if p.model is model and p.kind}
        assert kinds >= {"changelist", "change", "add", "delete", "history"}, model
        assert any(p.route == LEGACY_REDIRECT for p in PATTERNS if p.model is model)


# --- the ladder: actions ------------------------------------------------------------------------
NOBODY_ACTS = {NO_PERMISSIONS: "refused", AUDITOR: "refused", OPERATOR: "refused"}
READERS_ACT = {NO_PERMISSIONS: "refused", AUDITOR: "reads", OPERATOR: "reads"}
OPERATORS_ACT = {NO_PERMISSIONS: "refused", AUDITOR: "refused", OPERATOR: "acts"}
ACTION_LADDER = {
    # Records are read-only, users and groups are not the console's: nobody deletes.
    "delete_selected": NOBODY_ACTS,
    # django-q2's blind re-run of a task: superusers only (migrations_app/admin/queue.py).
    "resubmit_task": NOBODY_ACTS,
    "preview_selected": READERS_ACT,  # a page; nothing is sent or written
    "fetch_selected": OPERATORS_ACT,
    "migrate_selected": OPERATORS_ACT,
    "retry_selected": OPERATORS_ACT,
    "cancel_selected": OPERATORS_ACT,
    "remigrate_selected": OPERATORS_ACT,
    "sync_selected": OPERATORS_ACT,  # queues a check of each thread for new messages
}


def admin_actions() -> list[tuple[type[models.Model], str]]:
    """Every action of every registered ModelAdmin, the site-wide ones included."""
    found = []
    for model in registered_models():
        model_admin = admin.site.get_model_admin(model)
        if model_admin.actions is None:
            continue
        declared = [name for name, _ in admin.site.actions] + list(model_admin.actions)
        for action in declared:
            _, name, _ = model_admin.get_action(action)
            found.append((model, name))
    return found


ACTIONS = admin_actions()


@pytest.mark.parametrize(
    ("model", "action"), ACTIONS, ids=[f"{m._meta.label_lower} {a}" for m, a in ACTIONS]
)
def test_every_admin_action_is_offered_and_applied_only_as_the_ladder_says(
    model, action, world, users
):
    if action not in ACTION_LADDER:
        pytest.fail(
            f"The admin action {action!r} of {model._meta.label} has no rung on the permission "
            "ladder: add it to ACTION_LADDER in tests/test_permissions.py."
        )
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    selected = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
    assert selected, f"the ladder's world has no {model.__name__} to select"
    form = {"action": action, helpers.ACTION_CHECKBOX_NAME: selected, "index": 0, "post": "yes"}
    problems = []
    for persona in PERSONAS:
        client = client_for(persona, users)
        listing = client.get(url)
        before = database_rows()
        response = client.post(url, form)
        changed = database_rows() != before
        if persona == ANONYMOUS:
            if outcome(response) != LOGIN or changed:
                problems.append(f"anonymous: {outcome(response)}, changed: {changed}")
            continue
        expected = ACTION_LADDER[action][persona]
        menu = listing.context["action_form"] if listing.status_code == 200 else None
        offered = menu is not None and action in [n for n, _ in menu.fields["action"].choices]
        if offered != (expected != "refused"):
            problems.append(f"{persona}: offered {offered}, the ladder says {expected}")
        # Refused: 403, or the list again (the action is not among the user's), nothing changed.
        relisted = response.status_code in (200, 302) and (
            response.status_code == 302 or "cl" in response.context
        )
        if expected == "refused" and (not (relisted or response.status_code == 403) or changed):
            problems.append(f"{persona}: forged POST got {response.status_code}, changed {changed}")
        if expected == "reads" and (response.status_code != 200 or changed):
            problems.append(f"{persona}: got {response.status_code}, changed {changed}")
        if expected == "acts" and (response.status_code != 302 or not changed):
            problems.append(f"{persona}: got {response.status_code}, changed {changed}")
    assert not problems, f"{model._meta.label} {action}:\n" + "\n".join(problems)


# --- finding 1 ----------------------------------------------------------------------------------
def test_the_assistant_page_needs_the_view_assistant_permission(client):
    assistant = Assistant.objects.create(assistant_id="asst_x", name="X", data={"id": "asst_x"})
    user = personas.staff_without_permissions()
    user.user_permissions.add(Permission.objects.get(codename="view_thread"))
    client.force_login(user)
    url = reverse("admin:migrations_app_assistant_change", args=[assistant.pk])
    assert client.get(url).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_assistant"))
    user = User.objects.get(pk=user.pk)  # a fresh permission cache
    client.force_login(user)
    assert client.get(url).status_code == 200
    assert client.post(url, {"name": "changed"}).status_code == 403


def test_an_unknown_assistant_is_a_404_for_a_viewer_and_a_403_for_anyone_else(client):
    url = reverse("admin:migrations_app_assistant_change", args=[987654])
    client.force_login(personas.staff_without_permissions())
    assert client.get(url).status_code == 403
    client.force_login(personas.auditor())
    assert client.get(url).status_code == 404


def test_a_url_without_a_rung_fails_the_ladder_naming_it():
    with pytest.raises(pytest.fail.Exception, match=r"'admin:new_page' .* has no rung"):
        rung_for(AdminPattern(key="admin:new_page", route="new/"))
