"""Server-Sent Events, decoded line by line (the WHATWG `text/event-stream` rules the
API's event streams follow): `event:`, `id:` and `data:` fields, comment lines
(`: keep-alive`) ignored, a blank line ends an event."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from inferfleet_client.models import Event


@dataclass
class SSEDecoder:
    """Feed it the lines of a stream (without their line ends); it returns each event
    when its blank line arrives. `last_id` is the id to resume after (`Last-Event-ID`)."""

    last_id: str | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Event | None:
        """The event `line` completes, or None."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._event = ""
            return None
        data = json.loads("\n".join(self._data))
        event = Event(
            event=self._event or "message",
            id=self.last_id,
            data=data if isinstance(data, dict) else {"value": data},
        )
        self._event = ""
        self._data = []
        return event
