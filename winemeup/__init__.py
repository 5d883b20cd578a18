"""WineMeUp core: the feature schema, model runtimes and the pieces every deployable shares.

Nothing in this package imports a web framework or a Redis client.
"""

__version__ = "0.1.0"
