"""Service objects: tokens, runners, repositories, workflows, cron ticks, responses."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from conveyor.engine.records import KeyedRequest, TokenKind, TokenRecord
from conveyor.errors import Conflict, NotFound, StoreError

if TYPE_CHECKING:
    from tests.store.conftest import Kit

SQL = "x'); DROP TABLE workflows; -- \" % _ \\ %s %(x)s ?"
UNICODE = "naïve 🚀 日本語 \u202eevil\u202c e\u0301"
REQUEST, OTHER = "a" * 64, "b" * 64
"""Fingerprints of two requests sent with an `Idempotency-Key`."""
STALE = 60.0


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def test_tokens_are_found_by_their_digest_only(kit: Kit) -> None:
    store = kit.store
    await store.create_token("default", "admin", digest("root"))
    await store.create_token("default", TokenKind.REGISTRATION, digest("join"))
    runner = await store.register_runner("default", "r1", ["linux"])
    await store.create_token("default", "runner", digest("r1"), runner_id=runner.id)

    assert await store.find_token(digest("root")) == TokenRecord("default", TokenKind.ADMIN, None)
    assert await store.find_token(digest("join")) == TokenRecord(
        "default", TokenKind.REGISTRATION, None
    )
    assert await store.find_token(digest("r1")) == TokenRecord(
        "default", TokenKind.RUNNER, runner.id
    )
    for unknown in (digest("nope"), "root", "", SQL, digest("root").upper(), "\x00" * 64):
        assert await store.find_token(unknown) is None


async def test_bad_tokens_are_refused_and_leave_nothing(kit: Kit) -> None:
    store = kit.store
    runner = await store.register_runner("default", "r1", [])
    await store.create_token("default", "admin", digest("a"))
    with pytest.raises(Conflict):
        await store.create_token("default", "registration", digest("a"))
    with pytest.raises(ValueError, match="unknown token kind"):
        await store.create_token("default", "superuser", digest("b"))
    with pytest.raises(ValueError, match="SHA-256"):
        await store.create_token("default", "admin", "the token in clear")
    with pytest.raises(ValueError, match="names its runner"):
        await store.create_token("default", "runner", digest("c"))
    with pytest.raises(ValueError, match="names its runner"):
        await store.create_token("default", "admin", digest("d"), runner_id=runner.id)
    with pytest.raises(NotFound, match="tenant"):
        await store.create_token("nobody", "admin", digest("e"))
    with pytest.raises(NotFound, match="runner"):
        await store.create_token("default", "runner", digest("f"), runner_id="ghost")
    await store.create_tenant("acme", "Acme")
    with pytest.raises(NotFound, match="runner"):  # another tenant's runner
        await store.create_token("acme", "runner", digest("g"), runner_id=runner.id)
    for token in "bcdefg":
        assert await store.find_token(digest(token)) is None
    assert await kit.events() == []


async def test_runners_register_with_their_token_and_are_seen(kit: Kit) -> None:
    store = kit.store
    runner = await store.register_runner(
        "default", UNICODE, ["linux", SQL, UNICODE], token_hash=digest("t")
    )
    assert (runner.tenant_id, runner.name, runner.labels) == (
        "default",
        UNICODE,
        ("linux", SQL, UNICODE),
    )
    assert runner.created_at == runner.last_seen_at == kit.clock.now
    assert await store.find_token(digest("t")) == TokenRecord(
        "default", TokenKind.RUNNER, runner.id
    )
    kit.clock.advance(30)
    await store.touch_runner(runner.id)
    seen = await store.get_runner(runner.id)
    assert seen.last_seen_at == kit.clock.now and seen.created_at == runner.created_at
    with pytest.raises(NotFound):
        await store.get_runner("ghost")
    with pytest.raises(NotFound):
        await store.touch_runner("ghost")
    with pytest.raises(NotFound, match="tenant"):
        await store.register_runner("nobody", "r", [])
    with pytest.raises(Conflict):  # the digest is taken: the runner is not created either
        await store.register_runner("default", "again", [], token_hash=digest("t"))


async def test_repositories_are_named_once_per_tenant(kit: Kit) -> None:
    store = kit.store
    await store.create_tenant("acme", "Acme")
    web = await store.create_repository("default", "web", "/srv/git/web.git")
    api = await store.create_repository("default", "api", "https://example.com/api.git")
    theirs = await store.create_repository("acme", "web", "/elsewhere")
    assert (web.tenant_id, web.name, web.url, web.created_at) == (
        "default",
        "web",
        "/srv/git/web.git",
        kit.clock.now,
    )
    with pytest.raises(Conflict):
        await store.create_repository("default", "web", "/other")
    assert await store.get_repository("default", web.id) == web
    assert await store.find_repository("default", "web") == web
    assert await store.find_repository("acme", "web") == theirs
    assert await store.find_repository("default", "nope") is None
    assert await store.list_repositories("default") == [api, web]
    with pytest.raises(NotFound):
        await store.get_repository("acme", web.id)
    with pytest.raises(NotFound, match="tenant"):
        await store.create_repository("nobody", "x", "/x")


async def test_registering_a_workflow_again_replaces_its_source(kit: Kit) -> None:
    store = kit.store
    repo = await store.create_repository("default", "web", "/git/web")
    first = await store.register_workflow(
        "default", ".github/workflows/ci.yml", "on: push\n", "CI", repository_id=repo.id
    )
    assert (first.repository_id, first.path, first.name, first.source, first.enabled) == (
        repo.id,
        ".github/workflows/ci.yml",
        "CI",
        "on: push\n",
        True,
    )
    await store.set_workflow_enabled("default", first.id, False)
    kit.clock.advance(5)
    again = await store.register_workflow(
        "default",
        ".github/workflows/ci.yml",
        "on: [push, pull_request]\n",
        "CI 2",
        repository_id=repo.id,
    )
    assert (again.id, again.created_at, again.enabled) == (first.id, first.created_at, False)
    assert (again.source, again.name, again.updated_at) == (
        "on: [push, pull_request]\n",
        "CI 2",
        kit.clock.now,
    )
    loose = await store.register_workflow("default", ".github/workflows/ci.yml", "x", "Loose")
    assert loose.id != first.id and loose.repository_id is None
    assert (await store.register_workflow("default", ".github/workflows/ci.yml", "y", "L")).id == (
        loose.id
    )
    assert await store.get_workflow("default", first.id) == again
    assert await kit.events() == []


async def test_workflows_stay_inside_their_tenant(kit: Kit) -> None:
    store = kit.store
    await store.create_tenant("acme", "Acme")
    theirs_repo = await store.create_repository("acme", "web", "/git/web")
    mine = await store.register_workflow("default", "ci.yml", "on: push", "CI")
    with pytest.raises(NotFound, match="repository"):
        await store.register_workflow("default", "ci.yml", "x", "X", repository_id=theirs_repo.id)
    with pytest.raises(NotFound, match="tenant"):
        await store.register_workflow("nobody", "ci.yml", "x", "X")
    for call in (
        lambda: store.get_workflow("acme", mine.id),
        lambda: store.set_workflow_enabled("acme", mine.id, False),
        lambda: store.delete_workflow("acme", mine.id),
    ):
        with pytest.raises(NotFound):
            await call()
    assert await store.list_workflows("acme") == []
    assert (await store.get_workflow("default", mine.id)).enabled


async def test_workflows_page_by_id(kit: Kit) -> None:
    store = kit.store
    await store.create_tenant("acme", "Acme")
    made = [
        await store.register_workflow("default", f"w{n}.yml", "on: push", f"W{n}") for n in range(7)
    ]
    other = await store.register_workflow("acme", "w.yml", "on: push", "Theirs")
    await store.set_workflow_enabled("default", made[3].id, False)
    expected = sorted(made, key=lambda w: w.id)
    pages, after = [], None
    while page := await store.list_workflows("default", after=after, limit=3):
        pages.append([w.id for w in page])
        after = page[-1].id
    assert pages == [[w.id for w in expected[n : n + 3]] for n in (0, 3, 6)]
    assert [w.id for w in await store.list_workflows(None, limit=100)] == sorted(
        [w.id for w in made] + [other.id]
    )
    disabled = await store.list_workflows("default", enabled=False)
    assert [w.id for w in disabled] == [made[3].id]
    assert len(await store.list_workflows("default", enabled=True, limit=100)) == 6
    assert await store.list_workflows("default", limit=0) == []


async def test_deleting_a_workflow_keeps_its_runs(kit: Kit) -> None:
    store = kit.store
    flow = await store.register_workflow("default", "nightly.yml", "on: schedule", "Nightly")
    run, _ = await kit.run(workflow_id=flow.id)
    await store.delete_workflow("default", flow.id)
    with pytest.raises(NotFound):
        await store.get_workflow("default", flow.id)
    with pytest.raises(NotFound):
        await store.delete_workflow("default", flow.id)
    assert (await store.get_run(run.id)).workflow_id == flow.id


async def test_a_key_is_reserved_by_one_request_which_stores_its_answer(kit: Kit) -> None:
    store = kit.store
    body = '{"run_id": "r1", "note": "' + UNICODE + '"}'
    first = await store.reserve_response("default", "k1", REQUEST, STALE)
    assert first.fingerprint == REQUEST and first.reservation is not None
    in_flight = KeyedRequest(REQUEST)
    assert await store.reserve_response("default", "k1", REQUEST, STALE) == in_flight
    assert await store.reserve_response("default", "k1", OTHER, STALE) == in_flight
    assert (await store.reserve_response("acme", "k1", OTHER, STALE)).reservation is not None
    assert not await store.keep_response("default", "k1", "not-its", 202, body)
    assert await store.keep_response("default", "k1", first.reservation, 202, body)
    assert not await store.keep_response("default", "k1", first.reservation, 500, "x")
    assert not await store.release_response("default", "k1", first.reservation)
    kit.clock.advance(10 * STALE)  # an answer never goes stale
    done = KeyedRequest(REQUEST, None, 202, body)
    assert await store.reserve_response("default", "k1", REQUEST, STALE) == done
    held = await store.reserve_response("default", SQL, SQL, STALE)
    assert held.reservation is not None
    assert await store.keep_response("default", SQL, held.reservation, 201, SQL)
    assert await store.reserve_response("default", SQL, SQL, STALE) == KeyedRequest(
        SQL, None, 201, SQL
    )


async def test_a_released_or_stale_key_is_reserved_again(kit: Kit) -> None:
    store = kit.store
    first = await store.reserve_response("default", "k", REQUEST, STALE)
    assert first.reservation is not None
    assert await store.release_response("default", "k", first.reservation)
    again = await store.reserve_response("default", "k", OTHER, STALE)  # free for any request
    assert again.reservation not in (None, first.reservation)
    kit.clock.advance(STALE - 1)
    assert await store.reserve_response("default", "k", OTHER, STALE) == KeyedRequest(OTHER)
    kit.clock.advance(2)
    # stale, but bound to another request: not taken over by this one
    assert await store.reserve_response("default", "k", REQUEST, STALE) == KeyedRequest(OTHER)
    taken = await store.reserve_response("default", "k", OTHER, STALE)
    assert taken.reservation not in (None, again.reservation)
    assert again.reservation is not None and taken.reservation is not None
    assert not await store.keep_response("default", "k", again.reservation, 202, "late")
    assert not await store.release_response("default", "k", again.reservation)
    assert await store.keep_response("default", "k", taken.reservation, 202, "{}")


async def test_hostile_values_in_service_objects(kit: Kit) -> None:
    store = kit.store
    huge = "name: big\n" + "# " + "y" * 2_000_000 + "\n"
    await store.create_tenant(SQL, UNICODE)
    repo = await store.create_repository(SQL, SQL, UNICODE)
    flow = await store.register_workflow(SQL, UNICODE, huge, SQL, repository_id=repo.id)
    assert (flow.path, flow.source, flow.name) == (UNICODE, huge, SQL)
    assert await store.find_repository(SQL, SQL) == repo
    nul = await store.register_workflow("default", "a\x00b.yml", "run: \x00", "N\x00L")
    assert (nul.path, nul.source, nul.name) == ("a\ufffdb.yml", "run: \ufffd", "N\ufffdL")
    runner = await store.register_runner(SQL, "r\x00", [SQL, "with\x00nul"])
    assert runner.name == "r\ufffd" and runner.labels == (SQL, "with\x00nul")
    held = await store.reserve_response("default", "k", REQUEST, STALE)
    assert held.reservation is not None
    assert await store.keep_response("default", "k", held.reservation, 200, "a\x00b")
    assert (await store.reserve_response("default", "k", REQUEST, STALE)).body == "a\ufffdb"
    with pytest.raises(StoreError, match="text cannot be stored"):  # a key, not free text
        await store.create_repository("lone \udcff", "web", "/x")
    odd = await store.create_repository("default", "lone \udcff", "/x")
    assert odd.name == "lone \ufffd"
