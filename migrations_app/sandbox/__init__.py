"""A local stand-in for the OpenAI API: the rehearsal target for staff and the tests' server."""

from migrations_app.sandbox.data import generate_dataset
from migrations_app.sandbox.server import SandboxServer
from migrations_app.sandbox.state import FaultConfig, SandboxState


def seeded_state(seed: int = 1, thread_count: int = 50) -> SandboxState:
    """A sandbox state holding the deterministic demo data set."""
    state = SandboxState()
    assistants, bundles = generate_dataset(seed=seed, thread_count=thread_count)
    state.load_assistants(assistants)
    for bundle in bundles:
        state.load_bundle(bundle)
    return state


__all__ = ["FaultConfig", "SandboxServer", "SandboxState", "generate_dataset", "seeded_state"]
