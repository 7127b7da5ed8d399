"""Side-by-side benchmark of otel-chatbot against the ceiling of its stack and a stock botbuilder echo bot
(docs/performance.md): `python -m loadtest.benchmark`."""
