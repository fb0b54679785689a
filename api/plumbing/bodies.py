"""What a request body is refused for before it is parsed, and what inline inputs may be.

`json.loads` turns 30 MiB of `{},{},…` into about 24 times as much memory, and nests as
deep as the text does. So before a route parses a body, `inspector(settings)` reads its
shape from the bytes (`inferfleet.jsondepth.shape`, no Python values built) and refuses:

- any body nesting arrays and objects more than `MAX_DEPTH + PARSE_SLACK` deep
  (422, `loc` `[]`: the body itself);
- any body holding more than `json_max_values` values (arrays, objects and the commas
  between elements: parsing makes a Python object of about 70 bytes for each, however
  short its text; 422, `loc` `[]`);
- a `POST /v1/jobs/bulk` body whose `items` hold more than `max_bulk_items` elements
  (422, `loc` `["items"]`), counted from the commas between them.

A body within these bounds is parsed; `deep_inputs` then names every inline `inputs`
nested deeper than `MAX_DEPTH` by its path (422), before the inputs are validated
against their schema.
"""

from __future__ import annotations

from typing import Any

from api.plumbing.middleware import Inspect
from inferfleet.errors import FieldError
from inferfleet.jsondepth import MAX_DEPTH, shape, too_deep
from inferfleet.settings import Settings

# Levels above `MAX_DEPTH` a body may nest and still be parsed, so that the field
# that nests too deep can be named: the envelope (body, items, item) and some more.
PARSE_SLACK = 64
BULK_PATH = "/v1/jobs/bulk"


def inspector(settings: Settings) -> Inspect:
    """The check `BodyLimitMiddleware` runs on a body's bytes before the route parses it."""
    max_depth = MAX_DEPTH + PARSE_SLACK
    max_items = settings.max_bulk_items
    max_values = settings.json_max_values

    def inspect(path: str, body: bytes) -> list[FieldError] | None:
        found = shape(body)
        errors = []
        if found.depth > max_depth:
            errors.append(
                FieldError(
                    (),
                    f"the body nests arrays and objects {found.depth} levels deep; it is "
                    f"not read past {max_depth} (inputs may nest {MAX_DEPTH})",
                    "too_deep",
                    found.depth,
                )
            )
        if found.values > max_values:
            errors.append(
                FieldError(
                    (),
                    f"the body holds {found.values} JSON values (arrays, objects and the "
                    f"commas between elements); at most {max_values} are parsed",
                    "too_many_values",
                    found.values,
                )
            )
        # Commas between the elements of the top-level value's arrays and objects: the
        # items' and the webhook's (at most 1), so at least this many items.
        if path == BULK_PATH and found.second_level_commas > max_items:
            errors.append(
                FieldError(
                    ("items",),
                    f"at most {max_items} items per request; the body holds at least "
                    f"{found.second_level_commas}",
                    "too_long",
                    found.second_level_commas,
                )
            )
        return errors or None

    return inspect


def deep_inputs(
    inputs: dict[str, Any], loc: tuple[str | int, ...], limit: int
) -> FieldError | None:
    """The error for `inputs` (at `loc`) if it nests deeper than `limit`, else None."""
    path = too_deep(inputs, limit)
    if path is None:
        return None
    return FieldError(
        (*loc, *path),
        f"nested deeper than {limit} levels of arrays and objects, the most inputs may nest",
        "too_deep",
        None,
    )
