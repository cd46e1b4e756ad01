"""The proxy's control plane: the app that wires it, admin, reload, route edits, audit, health."""
