"""The bot's knowledge base: sample questions and answers about the bot and how to monitor it."""

from bot.knowledge.matcher import KnowledgeBase, KnowledgeEntry, tokenize

__all__ = ["KnowledgeBase", "KnowledgeEntry", "tokenize"]
