"""Queue too long: a zone counted at or over its threshold (people) for a while fires; at or below its clear level
for a while clears. The zone's own rule, else its branch's, its regions', the site's (`server.registry.site`)."""

from __future__ import annotations

from server.rules.kind import RuleKind, always
from server.rules.threshold import threshold_reconciler

RULE = "queue_too_long"

KIND = RuleKind(
    RULE,
    severity="warning",
    role="duty_supervisor",
    inputs="people counted in a zone, in opening hours",
    reconcile=threshold_reconciler(RULE, always),
    about_zone=True,
    lobby=always,
)
