"""What a refused config file, settings or form says, in the reader's language.

Pydantic's messages are English only. Each of its errors has a stable `type` and a `ctx` of parameters, so a
problem is kept as those and worded from the catalogs (`validation.<type>`) when a person reads it; our own
checks raise `refuse(...)` (a PydanticCustomError) the same way. A type the catalogs lack (a newer pydantic's)
falls back to pydantic's English message, so nothing is ever hidden.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from lobbywatch.i18n import catalog, t


@dataclass(frozen=True, slots=True)
class Problem:
    where: str  # the field's path as the file spells it ("camera.zones.0.polygon"), "" for the whole
    kind: str  # pydantic's error type, or ours
    params: dict[str, str] = field(default_factory=dict)
    english: str = ""  # pydantic's own message: the fallback, and what the logs say

    def text(self, lang: str) -> str:
        key = f"validation.{self.kind}"
        message = self.english
        if key in catalog(lang) or key in catalog("en"):
            try:
                message = t(lang, key, **self.params)
            except (KeyError, IndexError):  # a parameter this pydantic no longer gives: its own words then
                message = self.english
        return f"{self.where}: {message}" if self.where else message


def refuse(kind: str, **params: object) -> PydanticCustomError:
    """Our own validation error, worded by the catalogs' `validation.<kind>`: raise it in a validator."""
    return PydanticCustomError(kind, catalog("en")[f"validation.{kind}"], {k: _shown(v) for k, v in params.items()})


def problems(exc: ValidationError) -> tuple[Problem, ...]:
    return tuple(
        Problem(
            where=".".join(str(part) for part in err["loc"]),
            kind=err["type"],
            params={k: _shown(v) for k, v in (err.get("ctx") or {}).items()},
            english=err["msg"],
        )
        for err in exc.errors(include_url=False)
    )


def lines(found: Iterable[Problem], lang: str, indent: str = "  ") -> list[str]:
    return [indent + problem.text(lang) for problem in found]


def _shown(value: object) -> str:
    if isinstance(value, BaseException):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(str(v) for v in value)
    return str(value)


class Refused(ValueError):
    """A file, settings or form that cannot be used: a headline (a catalog key and its parameters) and the
    problems. `str()` is the English text for logs; `text(lang)` is what a person reads."""

    def __init__(self, key: str, found: Iterable[Problem] = (), /, **params: object) -> None:
        self.key = key
        self.params = params
        self.problems = tuple(found)
        super().__init__(self.text("en"))

    def text(self, lang: str) -> str:
        return "\n".join([t(lang, self.key, **self.params), *lines(self.problems, lang)])
