"""Attaching a chat identity to a member for good (POST /v1/identity-links, issue 10's link
codes), over both transports, on SQLite and PostgreSQL: added when new, moved off the empty member
its first contact created, refused when that member has anything of its own (members are never
merged: points cannot be transferred between members), and keyed, so a retry gets the first
answer."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from ledger.schema import IdentityLink
from ledger_client import errors
from tests.conftest import Clients, World
from tests.ledger_support import FixedClock


async def _links(world: World) -> list[tuple[str, str, int, int | None]]:
    async with world.service.ctx.db.read() as session:
        rows = (await session.scalars(select(IdentityLink).order_by(IdentityLink.id))).all()
    return [(r.channel, r.external_id, r.member_id, r.from_member_id) for r in rows]


async def test_a_new_identity_is_added_and_recorded(clients: Clients, world: World) -> None:
    target = world.member_ids[0]
    linked = await clients.bot.attach_identity(target, "wechat", "o_new", "link-new-0001")
    assert (linked.member_id, linked.moved_from) == (target, None)
    assert (await clients.bot.resolve_member("wechat", "o_new")).id == target
    assert await _links(world) == [("wechat", "o_new", target, None)]


async def test_an_empty_first_contact_member_gives_its_identity_up(
    clients: Clients, world: World
) -> None:
    target = world.member_ids[0]
    empty = await clients.bot.resolve_member("wechat", "o_follower")
    assert empty.created
    linked = await clients.bot.attach_identity(target, "wechat", "o_follower", "link-move-0001")
    assert (linked.member_id, linked.moved_from) == (target, empty.id)
    again = await clients.bot.resolve_member("wechat", "o_follower")
    assert (again.id, again.created) == (target, False)
    assert await _links(world) == [("wechat", "o_follower", target, empty.id)]


async def test_a_member_with_points_keeps_its_identity(clients: Clients, world: World) -> None:
    target, other = world.member_ids[0], world.member_ids[1]
    await clients.merchant.record_purchase(world.merchant_id, other, 10_000, uuid.uuid4().hex)
    with pytest.raises(errors.IdentityInUse):
        await clients.bot.attach_identity(target, "test", "1", "link-busy-0001")
    assert (await clients.bot.resolve_member("test", "1")).id == other
    assert await _links(world) == []


async def test_a_member_with_a_live_code_keeps_its_identity_until_it_expires(
    clients: Clients, world: World, clock: FixedClock
) -> None:
    """A code shown at a till must still book on the member the person saw it under; once it
    expired unused it holds nothing back."""
    target, other = world.member_ids[0], world.member_ids[2]
    code = await clients.bot.issue_code(other)
    with pytest.raises(errors.IdentityInUse):
        await clients.bot.attach_identity(target, "test", "2", "link-code-0001")
    assert (await clients.bot.resolve_member("test", "2")).id == other
    clock.now = code.expires_at
    moved = await clients.bot.attach_identity(target, "test", "2", "link-code-0002")
    assert moved.moved_from == other


async def test_a_retry_gets_the_first_answer_and_a_reused_key_is_refused(
    clients: Clients, world: World
) -> None:
    target = world.member_ids[0]
    empty = await clients.bot.resolve_member("telegram", "9001")
    first = await clients.bot.attach_identity(target, "telegram", "9001", "link-retry-0001")
    retry = await clients.bot.attach_identity(target, "telegram", "9001", "link-retry-0001")
    assert retry == first and first.moved_from == empty.id
    assert len(await _links(world)) == 1
    with pytest.raises(errors.IdempotencyConflict):
        await clients.bot.attach_identity(target, "telegram", "9002", "link-retry-0001")


async def test_already_linked_changes_nothing_and_unknown_members_are_refused(
    clients: Clients, world: World
) -> None:
    target = world.member_ids[0]
    same = await clients.bot.attach_identity(target, "test", "0", "link-same-0001")
    assert (same.member_id, same.moved_from) == (target, None)
    assert await _links(world) == []
    with pytest.raises(errors.MemberNotFound):
        await clients.bot.attach_identity(999_999, "wechat", "o_x", "link-none-0001")
    with pytest.raises(errors.Forbidden):
        await clients.admin.attach_identity(target, "wechat", "o_y", "link-admin-0001")
