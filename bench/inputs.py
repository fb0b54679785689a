"""Seeded requests for the benches: fraud rows drawn like the model's training data,
and sentences for the text models. Only numpy: `bench/gpu.py` runs where the services'
libraries are not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def synthetic_inputs(request_schema: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` valid fraud requests, drawn like the model's training data."""
    categories = request_schema["properties"]["merchant_category"]["enum"]
    rng = np.random.default_rng(seed)
    amounts = rng.lognormal(mean=4.0, sigma=1.2, size=count).round(2).tolist()
    chosen = rng.choice(categories, size=count).tolist()
    ages = rng.integers(0, 3650, size=count).tolist()
    hours = rng.integers(0, 24, size=count).tolist()
    return [
        {
            "transaction_amount": amount,
            "merchant_category": category,
            "user_account_age_days": age,
            "hour_of_day": hour,
        }
        for amount, category, age, hour in zip(amounts, chosen, ages, hours, strict=True)
    ]


# Sentences are built from these, weighted by rank (Zipf), so common words dominate as
# in prose and the rarer, longer ones split into several word pieces.
VOCABULARY = (
    "the of and to a in is that for it was on with as be by at this are from or have an "
    "they which one you were her all she there would their we him been has when who will "
    "more no if out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even "
    "most made after also did many before must through back years where much your way "
    "well down should because each just those people how too little state good very make "
    "world still own see men work long get here between both life being under never day "
    "same another know while last might us great old year off come since against go came "
    "right used take three customer invoice shipment payment account delivery warehouse "
    "contract refund subscription quarterly revenue forecast infrastructure latency "
    "throughput deployment configuration authentication microservice kubernetes database "
    "migration telemetry anomaly regression embedding transformer tokenizer inference "
    "photosynthesis archaeological Mediterranean Renaissance constitutional biodiversity "
    "cardiovascular pharmaceutical semiconductor extraordinary nevertheless approximately "
    "2019 2024 42 3.5 100 1,250 15% $49.99 COVID-19 iPhone GitHub Zürich naïve café"
)
WORDS = VOCABULARY.split()
MIN_WORDS, MAX_WORDS = 8, 60


def synthetic_sentences(count: int, seed: int) -> list[str]:
    """`count` sentences of 8 to 60 words (uniform), the same for the same seed."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(WORDS) + 1)
    weights /= weights.sum()
    lengths = rng.integers(MIN_WORDS, MAX_WORDS + 1, size=count)
    sentences = []
    for n in lengths.tolist():
        words = [WORDS[i] for i in rng.choice(len(WORDS), size=n, p=weights).tolist()]
        for i in range(7, n - 1, 9):  # a clause break every nine words or so
            words[i] += ","
        text = " ".join(words)
        sentences.append(text[0].upper() + text[1:] + ".")
    return sentences
