"""Go config fields mly accepts (so Go configs load unchanged) but does not act on yet.

Silently ignoring them would be a trap (a TLS block that does nothing, a dictionary
URL that is never read), so the server names each one it finds at start-up.
"""

from __future__ import annotations

from mly.config.schema import Config

__all__ = ["unsupported_settings"]


def unsupported_settings(config: Config) -> list[str]:
    """``key path: what happens instead`` for every set field mly does not implement."""
    found: list[str] = []
    for i, model in enumerate(config.models):
        where = f"Models[{i}]"
        if model.dict_url:
            found.append(f"{where}.DictURL: ignored; the dictionary is read from the model's lookup tables")
    return found
