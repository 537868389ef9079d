"""A local stand-in for the OpenAI API: the rehearsal target for staff and the tests' server."""

from migrations_app.sandbox.data import generate_dataset
from migrations_app.sandbox.foundry import generate_foundry_dataset
from migrations_app.sandbox.server import SandboxServer
from migrations_app.sandbox.state import FaultConfig, SandboxState


def seeded_state(seed: int = 1, thread_count: int = 50, *, foundry: bool = False) -> SandboxState:
    """A sandbox state holding the deterministic demo data set; with `foundry`, the same data
    with Azure Foundry's tools, tool calls and annotations added (what Azure mode serves)."""
    state = SandboxState()
    generate = generate_foundry_dataset if foundry else generate_dataset
    assistants, bundles = generate(seed=seed, thread_count=thread_count)
    state.load_assistants(assistants)
    for bundle in bundles:
        state.load_bundle(bundle)
    return state


__all__ = [
    "FaultConfig",
    "SandboxServer",
    "SandboxState",
    "generate_dataset",
    "generate_foundry_dataset",
    "seeded_state",
]
