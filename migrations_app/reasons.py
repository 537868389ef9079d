"""A failure's reason: its error message with what differs from thread to thread taken out.

The dashboard groups failed threads by (error kind, reason), so that ten thousand ids the source
does not know are one group with one button, not ten thousand: "No thread found with id
'thread_…'" rather than one message per id. The reason is computed where the error is written
(`states`) and stored on the thread beside the message, so grouping, the group's link and its
remedy button all read one indexed column. Pure functions, no database.
"""

import re

TEMPLATE_LENGTH = 200  # the column's length: a reason longer than this is cut
ID_PLACEHOLDER = "…"
NUMBER_PLACEHOLDER = "N"

# An API object id: a lowercase prefix, "_", then a token with a digit or a capital letter in it
# (thread_abc123, conv_68a5…, req_…, msg_…, call_…); words joined by "_" (file_search,
# function_call_output) are not ids.
_PREFIXED_ID = re.compile(r"\b([a-z]{2,12})_([A-Za-z0-9-]{6,})\b")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")
_LONG_HEX = re.compile(r"\b(?=[0-9a-f]*[0-9])[0-9a-f]{16,}\b")
# A number, except an HTTP status ("HTTP 404") and part of a word or name (gpt-4o, v1).
_NUMBER = re.compile(r"(?<!HTTP )(?<![\w.-])\d+(?:\.\d+)?(?![\w-])")


def _prefixed_id(match: re.Match[str]) -> str:
    prefix, token = match.groups()
    if any(c.isdigit() or c.isupper() for c in token):
        return f"{prefix}_{ID_PLACEHOLDER}"
    return match[0]


def error_template(message: str) -> str:
    """`message` with its ids (thread_…, conv_…, uuids, long hex) and numbers replaced, HTTP
    statuses kept; at most TEMPLATE_LENGTH characters."""
    if not message:
        return ""
    template = _PREFIXED_ID.sub(_prefixed_id, message)
    template = _UUID.sub(ID_PLACEHOLDER, template)
    template = _LONG_HEX.sub(ID_PLACEHOLDER, template)
    template = _NUMBER.sub(NUMBER_PLACEHOLDER, template)
    template = " ".join(template.split())  # one line: newlines and runs of spaces as one space
    if len(template) > TEMPLATE_LENGTH:
        template = template[: TEMPLATE_LENGTH - 1] + "…"
    return template
