"""The proxy's edge: client connections, forwarding and upstream pools (sockets)."""
