"""The lighter queue and flag under uvicorn's WebSocket protocol."""

from __future__ import annotations

import asyncio

import pytest

from tidings.server.ws.uvicorn_protocol import _Flag, _Inbox


async def test_inbox_is_first_in_first_out_and_wakes_a_waiting_getter():
    inbox = _Inbox()
    assert inbox.empty()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert await getter == "a"
    assert not inbox.empty()
    assert await inbox.get() == "b"
    assert inbox.empty()


async def test_inbox_getter_cancelled_after_its_wake_up_passes_it_on():
    inbox = _Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("x")
    first.cancel()
    assert await second == "x"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_flag_wait_returns_once_set():
    flag = _Flag()
    assert not flag.is_set()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    flag.set()
    assert await waiter is True
    flag.clear()
    assert not flag.is_set()
    flag.set()
    assert await flag.wait() is True
