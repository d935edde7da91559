"""`Registry`: names mapped to builder functions, one per kind of thing.

Datasets, backbones, experiment presets and stage-2 methods are each one registry:
a new one is a decorated function, never an edit in several places.
"""


class Registry:
    """Names -> functions of one kind ("dataset", "backbone", "preset", "method").

    Args:
        kind: what the names name, for error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries = {}

    def register(self, name: str):
        """Decorator registering a function under ``name`` (once; re-registering the same
        function is allowed, so a module may be imported twice)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")

        def decorator(fn):
            if self._entries.get(name, fn) is not fn:
                raise ValueError(
                    f"A {self.kind} is already registered under this name. Received: name={name!r}"
                )
            self._entries[name] = fn
            return fn

        return decorator

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str, *, argument: str | None = None):
        """The function registered as ``name``; ValueError naming the known ones otherwise."""
        if name not in self._entries:
            raise ValueError(
                f"Unknown {self.kind}. Known: {self.names()}. "
                f"Received: {argument or self.kind}={name!r}"
            )
        return self._entries[name]

    def __contains__(self, name) -> bool:
        return name in self._entries
