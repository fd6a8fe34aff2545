"""Enforcement: planning (pure) and the actions that stop, remove and prevent banned apps."""
