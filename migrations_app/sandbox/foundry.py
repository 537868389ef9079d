"""Azure Foundry's classic agents, in their wire shapes: the sandbox's Azure mode serves these.

Foundry's agents API is Assistants-shaped, with tools of its own. The shapes follow Azure's
TypeSpec for the agents API (azure-rest-api-specs, specification/ai/Azure.AI.Agents:
tools/models.tsp, tools/tool_resources.tsp, messages/models.tsp): tool definitions on agents and
runs, their resources (`azure_ai_search` indexes, `mcp` as a *list*), run step tool calls, and
`url_citation` annotations. Where the spec types a call's payload as `Record<string>` (bing,
Azure AI Search, SharePoint, Fabric, OpenAPI) the keys below are illustrative; conversion reads
none of them.

The Foundry extras use their own random generator, so the OpenAI-shaped demo data stays byte for
byte what it was, and the same seed always gives the same Foundry data.
"""

import json
import random
from collections.abc import Iterator
from typing import Any

from migrations_app.sandbox.data import IdMaker, generate_assistants, generate_thread

JSON = dict[str, Any]

# Every Foundry tool type the console must convert or warn about, in the order the generator
# hands them out (bing_custom_search is one more that Foundry has).
TOOL_TYPES = (
    "bing_grounding",
    "azure_ai_search",
    "openapi",
    "azure_function",
    "sharepoint_grounding",
    "fabric_dataagent",
    "mcp",
    "connected_agent",
    "deep_research",
    "browser_automation",
    "bing_custom_search",
)
CONNECTIONS = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/support/providers/"
    "Microsoft.CognitiveServices/accounts/contoso-ai/projects/support/connections/"
)
MCP_LABEL = "docs"
FOUNDRY_SEED_OFFSET = 1_000_003  # the Foundry extras' generator: apart from the demo data's


def _connection(name: str) -> str:
    return CONNECTIONS + name


def _connections(name: str) -> JSON:
    return {"connections": [{"connection_id": _connection(name)}]}


def _queue(name: str) -> JSON:
    return {
        "type": "storage_queue",
        "storage_queue": {
            "queue_service_endpoint": "https://contosostorage.queue.core.windows.net",
            "queue_name": name,
        },
    }


ORDER_PARAMETERS = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}


def tool_definition(kind: str, connected_agent_id: str = "asst_connected") -> JSON:
    """A Foundry tool definition as an agent (and its runs) lists it."""
    bodies: dict[str, JSON] = {
        "bing_grounding": {
            "search_configurations": [
                {"connection_id": _connection("bing"), "market": "en-US", "count": 5}
            ]
        },
        "azure_ai_search": {},
        "openapi": {
            "name": "orders",
            "description": "Looks up orders in the order service.",
            "spec": {
                "openapi": "3.0.0",
                "info": {"title": "Orders", "version": "1.0"},
                "servers": [{"url": "https://orders.contoso.example"}],
                "paths": {"/orders/{id}": {"get": {"operationId": "getOrder"}}},
            },
            "auth": {"type": "anonymous"},
            "functions": [
                {"name": "getOrder", "description": "One order.", "parameters": ORDER_PARAMETERS}
            ],
        },
        "azure_function": {
            "function": {
                "name": "check_inventory",
                "description": "Stock left for a product.",
                "parameters": ORDER_PARAMETERS,
            },
            "input_binding": _queue("inventory-input"),
            "output_binding": _queue("inventory-output"),
        },
        "sharepoint_grounding": _connections("sharepoint"),
        "fabric_dataagent": _connections("fabric"),
        "connected_agent": {
            "id": connected_agent_id,
            "name": "billing_agent",
            "description": "Answers billing questions.",
        },
        "deep_research": {
            "deep_research_model": "o3-deep-research",
            "bing_grounding_connections": [{"connection_id": _connection("bing")}],
        },
        "browser_automation": {"connection": {"id": _connection("playwright")}},
        "bing_custom_search": {
            "search_configurations": [
                {"connection_id": _connection("bing-custom"), "instance_name": "docs-only"}
            ]
        },
    }
    if kind == "mcp":  # MCP's fields sit on the tool itself
        return {
            "type": "mcp",
            "server_label": MCP_LABEL,
            "server_url": "https://mcp.contoso.example/docs",
            "allowed_tools": ["search_docs"],
        }
    if kind == "azure_ai_search":  # its index is a tool resource
        return {"type": kind}
    return {"type": kind, kind: bodies[kind]}


def tool_resources() -> JSON:
    """The resources Foundry keeps beside its tools (`mcp` is a list)."""
    return {
        "azure_ai_search": {
            "indexes": [
                {
                    "index_connection_id": _connection("search"),
                    "index_name": "support-kb",
                    "query_type": "vector_semantic_hybrid",
                    "top_k": 5,
                }
            ]
        },
        "mcp": [{"server_label": MCP_LABEL, "headers": {}, "require_approval": "never"}],
    }


def tool_call(kind: str, call_id: str, rng: random.Random) -> JSON:
    """A run step's record of one Foundry tool call, as the run steps list shows it."""
    order = str(rng.randint(10000, 99999))
    arguments = json.dumps({"order_id": order})
    output = json.dumps({"status": "shipped", "order_id": order})
    bodies: dict[str, Any] = {
        "bing_grounding": {
            "requesturl": f"https://api.bing.microsoft.com/v7.0/search?q=order+{order}",
            "response_metadata": "{'market': 'en-US', 'num_docs_retrieved': 5}",
        },
        "azure_ai_search": {"input": f"order {order}", "output": "{'title': 'Shipping policy'}"},
        "openapi": {"name": "orders_getOrder", "arguments": arguments, "output": output},
        "azure_function": {"name": "check_inventory", "arguments": arguments, "output": output},
        "sharepoint_grounding": {"input": f"order {order}", "output": "Returns policy.docx"},
        "fabric_dataagent": {"input": f"orders like {order}", "output": "3 rows"},
        "connected_agent": {
            "name": "billing_agent",
            "arguments": arguments,
            "output": "The invoice was paid.",
            "run_id": "run_connected" + order,
            "thread_id": "thread_connected" + order,
            "assistant_id": "asst_connected",
        },
        "deep_research": {"input": f"Delivery delays for order {order}", "output": "A report."},
        "browser_automation": {
            "input": f"Track parcel {order}",
            "output": "In transit",
            "steps": [
                {
                    "last_step_result": "Opened the carrier's page",
                    "current_state": "Tracking form shown",
                    "next_step": "Enter the parcel number",
                }
            ],
        },
        "bing_custom_search": {
            "requesturl": f"https://api.bing.microsoft.com/v7.0/custom/search?q={order}"
        },
    }
    if kind == "mcp":
        return {
            "id": call_id,
            "type": "mcp",
            "arguments": json.dumps({"query": f"order {order}"}),
            "name": "search_docs",
            "output": "2 pages found",
            "server_label": MCP_LABEL,
        }
    return {"id": call_id, "type": kind, kind: bodies[kind]}


def url_citation(value: str, url: str, title: str) -> JSON:
    """A text block citing a web page, as bing_grounding answers carry them."""
    placeholder = "【3:0†source】"
    text = f"{value} {placeholder}"
    start = text.index(placeholder)
    return {
        "type": "text",
        "text": {
            "value": text,
            "annotations": [
                {
                    "type": "url_citation",
                    "text": placeholder,
                    "start_index": start,
                    "end_index": start + len(placeholder),
                    "url_citation": {"url": url, "title": title},
                }
            ],
        },
    }


def _foundry_step(ids: IdMaker, run: JSON, call: JSON) -> JSON:
    return {
        "id": ids("step_"),
        "object": "thread.run.step",
        "created_at": run["created_at"],
        "assistant_id": run["assistant_id"],
        "thread_id": run["thread_id"],
        "run_id": run["id"],
        "type": "tool_calls",
        "status": "completed",
        "step_details": {"type": "tool_calls", "tool_calls": [call]},
        "last_error": None,
        "expired_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": run["created_at"],
        "metadata": {},
        "usage": None,
    }


class FoundryExtras:
    """Adds Foundry's shapes to generated OpenAI-shaped data, from its own generator: tools on
    every agent (all of TOOL_TYPES across the agents), one Foundry call step every third run
    (the types in turn), a url_citation on every fifth assistant reply, a data-source attachment
    (Azure's alternative to a file id) on every seventh user message."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed + FOUNDRY_SEED_OFFSET)
        self.ids = IdMaker(self.rng)
        self.runs = self.replies = self.asks = 0

    def agents(self, assistants: list[JSON]) -> None:
        for index, assistant in enumerate(assistants):
            kinds = TOOL_TYPES[index :: len(assistants)]
            assistant["tools"] += [tool_definition(kind, assistants[0]["id"]) for kind in kinds]
            assistant["tool_resources"] = {**assistant["tool_resources"], **tool_resources()}

    def bundle(self, bundle: JSON) -> JSON:
        bundle["thread"]["tool_resources"] = {
            **(bundle["thread"]["tool_resources"] or {}),
            "mcp": tool_resources()["mcp"],
        }
        for run in bundle["runs"]:
            if self.runs % 3 == 0:
                kind = TOOL_TYPES[self.runs // 3 % len(TOOL_TYPES)]
                call = tool_call(kind, self.ids("call_"), self.rng)
                bundle["run_steps"].append(_foundry_step(self.ids, run, call))
            self.runs += 1
        for message in bundle["messages"]:
            self.message(message)
        return bundle

    def message(self, message: JSON) -> None:
        if message["role"] == "assistant":
            if self.replies % 5 == 0:
                message["content"].append(
                    url_citation(
                        "Delivery times are on the carrier's page.",
                        "https://www.contoso.example/shipping",
                        "Shipping | Contoso",
                    )
                )
            self.replies += 1
        else:
            if self.asks % 7 == 3:
                message["attachments"] = [
                    *message["attachments"],
                    {
                        "data_source": {
                            "uri": "azureml://datastores/workspaceblobstore/paths/faq.pdf",
                            "type": "uri_asset",
                        },
                        "tools": [{"type": "file_search"}],
                    },
                ]
            self.asks += 1


def generate_foundry_dataset(
    seed: int = 1, thread_count: int = 50, assistant_count: int = 4
) -> tuple[list[JSON], Iterator[JSON]]:
    """generate_dataset's agents and threads, with Foundry's tools, calls and annotations."""
    rng = random.Random(seed)
    ids = IdMaker(rng)
    assistants = generate_assistants(rng, ids, assistant_count)
    extras = FoundryExtras(seed)
    extras.agents(assistants)

    def bundles() -> Iterator[JSON]:
        for index in range(thread_count):
            yield extras.bundle(generate_thread(rng, ids, assistants, index))

    return assistants, bundles()
