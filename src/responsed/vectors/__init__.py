"""Retrieval for vector stores: files → text → chunks → embeddings → hybrid index.

Importing this package is cheap: the local model (torch) loads on first embed.
"""
