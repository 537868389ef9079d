"""Export files in both layouts the console reads, written from sandbox data: the demo's exports,
the tests' and the benchmarks'.

- The console's own layout: one {"thread", "messages", "runs", "run_steps"} bundle per thread
  (`threads/<id>.json` beside `assistants.json`, or one per line of a .jsonl).
- assistants-thread-export/v1, as the public `assistants-api-export` tool's description has it
  (written from that description, not from the tool): a `manifest.json`, an `assistants.json`
  and `threads/<thread id>.json` records whose runs carry their steps, with the thread's files'
  metadata and the exporter's errors; a thread it could not read has "thread": null and is
  listed in the manifest's `threads_failed`. Steps are written as the API lists them: every
  kind (a `message_creation` step for each message a run created, beside the `tool_calls` ones).

What the exporter "could not read" is chosen by the caller (`V1Export.lost_steps`,
`lost_files`, `failed`), so a test or the demo shows each failure the layout can carry.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
THREAD_SCHEMA = "assistants-thread-export/v1"
MANIFEST_SCHEMA = "assistants-export-manifest/v1"
SCRIPT_VERSION = "1.4.0"
PURPOSES = ("assistants", "vision", "assistants_output")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


# --- the console's own layout ---------------------------------------------------------------------
def write_own_jsonl(path: Path, bundles: Iterable[JSON]) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for bundle in bundles:
            out.write(_dumps(bundle) + "\n")
    return path


def write_own_directory(root: Path, bundles: Iterable[JSON], assistants: list[JSON]) -> Path:
    (root / "threads").mkdir(parents=True, exist_ok=True)
    (root / "assistants.json").write_text(_dumps(assistants), encoding="utf-8")
    for bundle in bundles:
        path = root / "threads" / f"{bundle['thread']['id']}.json"
        path.write_text(_dumps(bundle), encoding="utf-8")
    return root


# --- assistants-thread-export/v1 ------------------------------------------------------------------
def _stable(text: str, modulo: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % modulo


def file_ids(bundle: JSON) -> list[str]:
    """Every file a thread's messages name (attachments, image files, annotations), in order."""
    found: dict[str, None] = {}
    for message in bundle["messages"]:
        for attachment in message.get("attachments") or ():
            found[attachment["file_id"]] = None
        for block in message.get("content") or ():
            if block.get("type") == "image_file":
                found[block["image_file"]["file_id"]] = None
            for annotation in (block.get("text") or {}).get("annotations") or ():
                kind = annotation.get("type")
                file_id = (annotation.get(kind) or {}).get("file_id")
                if file_id:
                    found[file_id] = None
    return list(found)


def file_object(file_id: str, created_at: int) -> JSON:
    """The File object the API returned for `file_id` (metadata only), made up deterministically."""
    name = ["report.pdf", "chart.png", "orders.csv", "policy.docx"][_stable(file_id, 4)]
    return {
        "id": file_id,
        "object": "file",
        "bytes": 1_000 + _stable(file_id, 5_000_000),
        "created_at": created_at,
        "filename": name,
        "purpose": PURPOSES[_stable(file_id + "p", len(PURPOSES))],
        "status": "processed",
        "status_details": None,
    }


def message_creation_step(run: JSON, message: JSON) -> JSON:
    return {
        "id": "step_" + message["id"].removeprefix("msg_"),
        "object": "thread.run.step",
        "created_at": message["created_at"],
        "assistant_id": run.get("assistant_id"),
        "thread_id": run.get("thread_id"),
        "run_id": run["id"],
        "type": "message_creation",
        "status": "completed",
        "step_details": {
            "type": "message_creation",
            "message_creation": {"message_id": message["id"]},
        },
        "last_error": None,
        "expired_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": message["created_at"],
        "metadata": {},
        "usage": None,
    }


def _run_steps(run: JSON, bundle: JSON) -> list[JSON]:
    """A run's steps as the API lists them oldest first: its tool calls and the messages it
    created (ties: tool calls first, as a run calls tools before it answers)."""
    steps = [s for s in bundle.get("run_steps") or () if s.get("run_id") == run["id"]]
    created = [
        message_creation_step(run, m) for m in bundle["messages"] if m.get("run_id") == run["id"]
    ]
    ordered = sorted(
        [(s["created_at"], 0, i, s) for i, s in enumerate(steps)]
        + [(s["created_at"], 1, i, s) for i, s in enumerate(created)]
    )
    return [step for *_, step in ordered]


def thread_record(
    bundle: JSON,
    exported_at: str,
    *,
    lost_steps: Iterable[str] = (),
    lost_files: Iterable[str] = (),
) -> JSON:
    """A readable thread as the v1 exporter writes it. Runs in `lost_steps` come without their
    steps, files in `lost_files` without their metadata: each with an entry in `errors`."""
    lost_steps, lost_files = set(lost_steps), set(lost_files)
    errors: list[JSON] = []
    runs = []
    for run in bundle.get("runs") or ():
        if run["id"] in lost_steps:
            runs.append({**run, "steps": []})
            errors.append(
                {
                    "object": "run_steps",
                    "id": run["id"],
                    "error": "not_found_or_expired",
                    "detail": "Error code: 404 - run steps are no longer available",
                }
            )
        else:
            runs.append({**run, "steps": _run_steps(run, bundle)})
    created = bundle["thread"].get("created_at") or 0
    files = {}
    for file_id in file_ids(bundle):
        if file_id in lost_files:
            errors.append(
                {
                    "object": "file",
                    "id": file_id,
                    "error": "not_found_or_deleted",
                    "detail": f"Error code: 404 - No such File object: {file_id}",
                }
            )
        else:
            files[file_id] = file_object(file_id, created)
    return {
        "export_schema": THREAD_SCHEMA,
        "thread_id": bundle["thread"]["id"],
        "exported_at": exported_at,
        "thread": bundle["thread"],
        "messages": bundle["messages"],
        "runs": runs,
        "files": files,
        "errors": errors,
    }


def unread_record(thread_id: str, exported_at: str, error: str) -> JSON:
    """A thread the exporter could not read."""
    return {
        "export_schema": THREAD_SCHEMA,
        "thread_id": thread_id,
        "exported_at": exported_at,
        "thread": None,
        "messages": [],
        "runs": [],
        "files": {},
        "errors": [
            {
                "object": "thread",
                "id": thread_id,
                "error": error,
                "detail": f"Error code: 404 - No thread found with id '{thread_id}'.",
            }
        ],
    }


@dataclass
class V1Export:
    """What the v1 exporter was given and what it could not read."""

    bundles: list[JSON]
    assistants: list[JSON] = field(default_factory=list)
    exported_at: str = "2026-08-20T14:03:11Z"
    failed: dict[str, str] = field(default_factory=dict)  # thread id -> error
    lost_steps: dict[str, list[str]] = field(default_factory=dict)  # thread id -> run ids
    lost_files: dict[str, list[str]] = field(default_factory=dict)  # thread id -> file ids
    notes: list[str] = field(default_factory=list)

    def records(self) -> Iterator[JSON]:
        for bundle in self.bundles:
            thread_id = bundle["thread"]["id"]
            yield thread_record(
                bundle,
                self.exported_at,
                lost_steps=self.lost_steps.get(thread_id, ()),
                lost_files=self.lost_files.get(thread_id, ()),
            )
        for thread_id, error in self.failed.items():
            yield unread_record(thread_id, self.exported_at, error)

    def manifest(self) -> JSON:
        return {
            "export_schema": MANIFEST_SCHEMA,
            "script_version": SCRIPT_VERSION,
            "exported_at": self.exported_at,
            "endpoint": "openai",
            "base_url": "https://api.openai.com/v1",
            "assistants_count": len(self.assistants),
            "threads_requested": len(self.bundles) + len(self.failed),
            "threads_exported": len(self.bundles),
            "threads_failed": [
                {"thread_id": thread_id, "error": error} for thread_id, error in self.failed.items()
            ],
            "notes": list(self.notes),
        }

    def files(self) -> Iterator[tuple[str, str]]:
        """(path inside the export, text) of every file the exporter writes."""
        yield "manifest.json", _dumps(self.manifest())
        yield "assistants.json", _dumps(self.assistants)
        for record in self.records():
            yield f"threads/{record['thread_id']}.json", _dumps(record)


def write_v1_directory(root: Path, export: V1Export) -> Path:
    (root / "threads").mkdir(parents=True, exist_ok=True)
    for name, text in export.files():
        (root / name).write_text(text, encoding="utf-8")
    return root


def write_v1_zip(path: Path, export: V1Export, top_folder: str = "assistants-export") -> Path:
    """The directory zipped, inside one top-level folder (as zipping a folder makes it);
    `top_folder=""` puts it at the zip's root."""
    prefix = f"{top_folder}/" if top_folder else ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in export.files():
            archive.writestr(prefix + name, text)
    return path


def write_v1_jsonl(path: Path, export: V1Export) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for record in export.records():
            out.write(_dumps(record) + "\n")
    return path


def write_own_zip(path: Path, bundles: Iterable[JSON], assistants: list[JSON]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/assistants.json", _dumps(assistants))
        for bundle in bundles:
            archive.writestr(f"export/threads/{bundle['thread']['id']}.json", _dumps(bundle))
    return path
