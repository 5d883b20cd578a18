"""The local stack launcher (``python -m services.stack``, ``make run``).

Trains the models if the store is empty, then starts the seven runners, Redis, the router,
Prometheus and the Streamlit UI, waits for each, and stops all of them on Ctrl-C / SIGTERM.
The process pieces (:mod:`services.stack.processes`) are shared with the integration tests.
"""
