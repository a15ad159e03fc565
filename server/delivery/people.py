"""The people channel as production wires it (routing by role, quiet hours, grouping, rate limits, one-tap
links), for the server and for the replay alike: the replay passes its simulated clock and a recorder as the
sender, and so judges exactly what production would send."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lobbywatch.clock import Clock
from lobbywatch.i18n import t
from server.delivery.apprise_channel import AppriseChannel
from server.delivery.links import sign
from server.delivery.notify import Notice
from server.registry.directory import Contact, Directory

Sender = Callable[[Contact, str, str, Sequence[int]], bool]


def ack_links(clock: Clock, public_url: str, ttl_h: float, secret: bytes) -> Callable[[Notice, Contact], str | None]:
    """A signed one-tap acknowledgement link per notice and person (none for a resolution)."""

    def link(notice: Notice, contact: Contact) -> str | None:
        if notice.change == "resolved":
            return None
        token = sign(notice.alert_id, contact.name, clock.now().timestamp() + ttl_h * 3600, secret)
        return f"{public_url.rstrip('/')}/ack/{token}"

    return link


def people_channel(
    directory: Directory,
    clock: Clock,
    link: Callable[[Notice, Contact], str | None],
    *,
    admin_urls: Sequence[str] = (),
    group_wait_s: float,
    group_interval_s: float,
    sender: Sender | None = None,
) -> AppriseChannel:
    def contacts(branch: str) -> tuple[Contact, ...]:
        entry = directory.branches.get(branch)
        return entry.contacts if entry else ()

    def label(key: str, branch_id: str, /, **params: object) -> str:  # params may hold a `branch` (its name)
        entry = directory.branches.get(branch_id)
        return t(entry.locale if entry else "zh-CN", key, **params)

    return AppriseChannel(
        contacts,
        link,
        label,
        admin_urls,
        clock=lambda: clock.now().timestamp(),
        group_interval_s=group_interval_s,
        group_wait_s=group_wait_s,
        sender=sender,
    )
