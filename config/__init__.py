"""Installed as `agent.bundled` (see pyproject.toml), so the example ban list and configs in this
folder ship inside the package and `appban check` works on a fresh machine with no server."""
