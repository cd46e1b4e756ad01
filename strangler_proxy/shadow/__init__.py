"""Shadow traffic and its evidence: sink, worker, client, compare, noise, store, report, gate."""
