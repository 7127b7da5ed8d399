"""Answers from a language model for the questions the knowledge base cannot answer (optional; docs/genai.md).

Kept light: bot.settings imports the configuration from here, and the `openai` client is imported only by the
engine, when a model is configured.
"""
