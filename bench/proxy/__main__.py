"""``python -m bench.proxy``: run the proxy benchmark."""

from bench.proxy.run import main

main()
