"""rlax_inf.agents: agents built from rlax_inf losses (installed as rlax_inf.agents)."""
