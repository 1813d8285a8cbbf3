"""The sync face of an async core: synchronous callers run coroutines on one event loop that
lives on a background thread for the whole process.

One long-lived loop, rather than ``asyncio.run`` per call, matters for real clients: provider SDKs
keep pooled HTTP connections bound to the loop that opened them, and a second ``asyncio.run`` would
hand them a closed loop. It also works where the caller already runs a loop (a notebook), which
``asyncio.run`` refuses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_start_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _start_lock:
        if _loop is None or not _thread or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                while True:
                    try:
                        loop.run_forever()
                        return
                    except BaseException:  # noqa: BLE001
                        # a KeyboardInterrupt / SystemExit raised inside a task (asyncio re-raises
                        # those out of the loop after handing them to the task's awaiters, who
                        # pass them on to the caller): keep serving the other runs
                        continue

            _thread = threading.Thread(target=serve, name="mllm-guidance-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result.

    The caller's context variables go with it (LangGraph's config and runtime, tracing). Ctrl-C
    in the caller cancels the coroutine and waits for it to unwind before re-raising, so that
    checkpoints and files are left consistent.
    """
    loop = _background_loop()
    if threading.current_thread() is _thread:
        # called from a coroutine already running on the background loop: waiting here would
        # block the loop that must run it, so give it a loop of its own on a helper thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(contextvars.copy_context().run, asyncio.run, coro).result()
    context = contextvars.copy_context()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    task_box: list[asyncio.Task[None]] = []

    async def guarded() -> None:
        # a KeyboardInterrupt or SystemExit escaping a task would stop the shared loop itself:
        # hand every outcome to the caller instead
        try:
            future.set_result(await coro)
        except asyncio.CancelledError:
            future.cancel()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            future.set_exception(exc)

    def start() -> None:
        task_box.append(loop.create_task(guarded(), context=context))

    loop.call_soon_threadsafe(start)
    try:
        return future.result()
    except KeyboardInterrupt:
        def cancel() -> None:
            for task in task_box:
                task.cancel()

        loop.call_soon_threadsafe(cancel)
        try:
            future.result(timeout=30)
        except BaseException:  # noqa: BLE001 - unwinding after the interrupt; the interrupt wins
            pass
        raise
