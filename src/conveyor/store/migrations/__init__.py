"""Versioned schema migrations, one module per version; applied by `conveyor.store.schema`.

A migration module never changes once released: fixes go into a new version.
"""
