"""api.plumbing.queue: acknowledgements settled on Kafka's threads reach the event loop."""

from __future__ import annotations

import asyncio
import threading

from api.plumbing.queue import Acks
from inferfleet.errors import QueueUnavailableError


def test_acks_settled_on_other_threads_complete_once_the_last_arrives() -> None:
    refused = QueueUnavailableError("refused")
    late = QueueUnavailableError("late")

    async def settle_from_threads() -> list[QueueUnavailableError | None]:
        acks = Acks(3, asyncio.get_running_loop())
        threads = [
            threading.Thread(target=acks.settle, args=(0, None)),
            threading.Thread(target=acks.settle, args=(2, refused)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        await asyncio.sleep(0)
        assert not acks.all_settled.done()
        assert acks.errors(late) == [None, late, refused]
        threading.Thread(target=acks.settle, args=(1, None)).start()
        await asyncio.wait_for(acks.all_settled, 10)
        acks.settle(1, refused)  # a second answer for a record changes nothing
        return acks.errors(late)

    assert asyncio.run(settle_from_threads()) == [None, None, refused]


def test_no_records_are_settled_at_once() -> None:
    async def empty() -> bool:
        return Acks(0, asyncio.get_running_loop()).all_settled.done()

    assert asyncio.run(empty())
