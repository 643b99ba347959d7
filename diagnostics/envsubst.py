"""``${VAR}`` / ``${VAR:-default}`` substitution, shared by runbooks and the stack's config templates."""

from __future__ import annotations

import re
from collections.abc import Mapping

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingVariable(KeyError):
    """A referenced variable is unset and has no default."""


def expand(text: str, environ: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise MissingVariable(name)

    return _ENV_REF.sub(sub, text)
