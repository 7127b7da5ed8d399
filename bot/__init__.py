"""The otel-chatbot Bot Framework bot."""
