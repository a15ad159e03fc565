"""Every kind of rule there is, each declared by its own module."""

from __future__ import annotations

from server.rules import calls, facility, opening, presence, queue, waiting
from server.rules.kind import RuleKind

KINDS: dict[str, RuleKind] = {
    kind.name: kind for kind in (queue.KIND, waiting.KIND, calls.KIND, presence.KIND, facility.KIND, opening.KIND)
}
ZONE_RULES = frozenset(name for name, kind in KINDS.items() if kind.about_zone)
