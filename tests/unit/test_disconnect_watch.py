"""The disconnect watch: through the server's signal, and through ASGI `receive()` elsewhere."""

from __future__ import annotations

import asyncio

import pytest

from aiproxy.gateway.disconnect import DISCONNECT_EXTENSION, DisconnectSignal, DisconnectWatch


async def _never() -> dict[str, str]:
    await asyncio.Event().wait()
    return {}


async def _upstream_wait(watch_factory) -> DisconnectWatch:  # type: ignore[no-untyped-def]
    task = asyncio.current_task()
    assert task is not None
    watch = watch_factory(task)
    try:
        await asyncio.sleep(5)  # the upstream call
    except asyncio.CancelledError:
        assert watch.gone
        task.uncancel()
    return watch


async def test_signal_from_the_server_cancels_the_wait() -> None:
    signal = DisconnectSignal()
    scope = {"extensions": {DISCONNECT_EXTENSION: signal}}
    waiting = asyncio.ensure_future(_upstream_wait(lambda task: DisconnectWatch(task, scope, _never)))
    await asyncio.sleep(0.01)
    assert signal.callback is not None  # no task of its own: just a callback
    signal.fire()
    watch = await asyncio.wait_for(waiting, 1)
    assert watch.gone


async def test_receive_fallback_cancels_the_wait() -> None:
    async def disconnect() -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    waiting = asyncio.ensure_future(_upstream_wait(lambda task: DisconnectWatch(task, {}, disconnect)))
    watch = await asyncio.wait_for(waiting, 1)
    assert watch.gone


async def test_a_stopped_watch_ignores_a_late_disconnect() -> None:
    signal = DisconnectSignal()
    task = asyncio.current_task()
    assert task is not None
    watch = DisconnectWatch(task, {"extensions": {DISCONNECT_EXTENSION: signal}}, _never)
    watch.stop()
    signal.fire()
    await asyncio.sleep(0)  # would raise CancelledError here if the stopped watch had cancelled us
    assert not watch.gone and signal.callback is None


@pytest.mark.parametrize("with_signal", [True, False])
async def test_stop_is_idempotent(with_signal: bool) -> None:
    task = asyncio.current_task()
    assert task is not None
    scope = {"extensions": {DISCONNECT_EXTENSION: DisconnectSignal()}} if with_signal else {}
    watch = DisconnectWatch(task, scope, _never)
    watch.stop()
    watch.stop()
    assert watch.stopped
