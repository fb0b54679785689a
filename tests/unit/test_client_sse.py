"""Server-Sent Events decoding (inferfleet_client.sse)."""

from __future__ import annotations

from inferfleet_client.sse import SSEDecoder


def feed(decoder: SSEDecoder, text: str) -> list[tuple[str, str | None, dict[str, object]]]:
    found = []
    for line in text.split("\n"):
        event = decoder.feed(line)
        if event is not None:
            found.append((event.event, event.id, event.data))
    return found


def test_events_comments_and_ids() -> None:
    decoder = SSEDecoder()
    stream = (
        ": keep-alive\n"
        'event: job.queued\nid: 1\ndata: {"status": "queued"}\n\n'
        ": keep-alive\n\n"
        'event: job.succeeded\nid: 2\ndata: {"status":\n'
        'data:  "succeeded"}\n\n'
    )

    assert feed(decoder, stream) == [
        ("job.queued", "1", {"status": "queued"}),
        ("job.succeeded", "2", {"status": "succeeded"}),
    ]
    assert decoder.last_id == "2"


def test_the_last_id_survives_events_without_one_and_seeds_a_resume() -> None:
    decoder = SSEDecoder(last_id="7")
    assert feed(decoder, 'data: {"n": 1}\n\n') == [("message", "7", {"n": 1})]
    assert feed(decoder, "id: 8\n\n") == []  # an id alone moves the resume point
    assert decoder.last_id == "8"
