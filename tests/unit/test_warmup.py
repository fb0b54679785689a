"""worker.warmup and worker.runtime.warm_up: the calls a model runs before it is ready."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from inferfleet.models.sessions import CUDA, SessionConfig
from tests import tinytext
from worker.runtime import LoadedModel, open_package, warm_up
from worker.warmup import (
    CPU_WARM_UP_ROWS,
    TextField,
    long_text,
    placeholder_rows,
    warm_up_batches,
)

EXAMPLE = {"text": "The quick brown fox."}
TABULAR = {"amount": 12.5, "category": "travel"}


@pytest.mark.parametrize(
    ("text", "words", "expected"),
    [
        ("a b c", 7, "a b c a b c a"),
        ("a b c", 3, "a b c"),
        ("a b c d e", 2, "a b c d e"),  # never shorter than the text itself
        ("", 3, "warm warm warm"),
    ],
)
def test_long_text_repeats_the_words_to_the_length(text: str, words: int, expected: str) -> None:
    assert long_text(text, words) == expected


def test_on_cpu_a_few_rows_of_the_example_run() -> None:
    text = TextField("text", 256)
    assert warm_up_batches(EXAMPLE, 64, False, text) == [[EXAMPLE] * CPU_WARM_UP_ROWS]
    assert placeholder_rows(64, False) == [CPU_WARM_UP_ROWS]


def test_on_a_gpu_a_text_model_runs_its_batch_at_the_longest_length_then_the_shortest() -> None:
    calls = warm_up_batches(EXAMPLE, 64, True, TextField("text", 256))

    assert [len(call) for call in calls] == [64, 1]
    assert all(len(row["text"].split()) >= 256 for row in calls[0])
    assert calls[1] == [{"text": "The"}]


def test_on_a_gpu_a_tabular_model_runs_its_batch_then_one_row() -> None:
    assert warm_up_batches(TABULAR, 2048, True, None) == [[TABULAR] * 2048, [TABULAR]]
    assert placeholder_rows(2048, True) == [2048, 1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    files = tinytext.build(tmp_path_factory.mktemp("tinytext"))
    return open_package("tinytext", 1, tinytext.manifest(), files, SessionConfig())


def shapes_of_warm_up(model: LoadedModel, example: dict[str, Any] | None) -> list[tuple[int, ...]]:
    """The `input_ids` (or first input) shapes of each call `warm_up` makes."""
    seen: list[tuple[int, ...]] = []
    session = model.session

    class Watched:
        def run(self, names: Any, feeds: dict[str, Any]) -> Any:
            seen.append(tuple(next(iter(feeds.values())).shape))
            return session.run(names, feeds)

        def __getattr__(self, name: str) -> Any:
            return getattr(session, name)

    warm_up(replace(model, session=Watched()), example)
    return seen


def test_a_gpu_warm_up_feeds_the_preferred_batch_at_max_length(model: LoadedModel) -> None:
    on_gpu = replace(model, provider=CUDA)  # the CPU session, planned as a GPU one

    shapes = shapes_of_warm_up(on_gpu, tinytext.EXAMPLE)

    assert shapes == [(tinytext.BATCH, tinytext.MAX_LENGTH), (1, 1)]


def test_a_cpu_warm_up_feeds_a_few_rows_of_the_example(model: LoadedModel) -> None:
    example_tokens = len(tinytext.EXAMPLE["text"].split())

    assert shapes_of_warm_up(model, tinytext.EXAMPLE) == [(CPU_WARM_UP_ROWS, example_tokens)]
    assert shapes_of_warm_up(replace(model, provider=CUDA), None) == [
        (tinytext.BATCH, 1),
        (1, 1),
    ]
