"""The ``data`` section's piece: reading scored pair rows as they are published and building
their pairs, the work ``task=custom`` does before any model is loaded.

A synthetic file in the UltraFeedback-binarized layout (``prompt``, ``chosen`` and
``rejected`` as chat messages, ``score_chosen``, ``score_rejected``; about 2 KB a row, as
the real rows' median) is written first, untimed; then ``scored_layouts.read_data`` reads
it (layout ``auto``) and every training pair is built from its groups, timed. The child's
peak memory is the section's memory figure."""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

SENTENCE = "the model answer explains why each step follows from the one before it and what "
WORDS = tuple((SENTENCE + "a careful reader would check next in the proof of the claim").split(" "))


def write_rows(path: Path, n_rows: int, seed: int = 0) -> int:
    """``n_rows`` pair rows, one prompt each (as UltraFeedback-binarized's 61k rows are
    ~61k prompts), 1-10 ratings; returns the file's bytes."""
    rng = random.Random(seed)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    with open(path, "w") as f:
        for i in range(n_rows):
            prompt = f"Question {i}: {text(30)}?"
            scores = sorted(rng.sample(range(1, 11), 2), reverse=True)
            user = {"role": "user", "content": prompt}
            row = {
                "prompt": prompt,
                "prompt_id": f"{i:08x}",
                "chosen": [user, {"role": "assistant", "content": text(120)}],
                "rejected": [user, {"role": "assistant", "content": text(120)}],
                "score_chosen": float(scores[0]),
                "score_rejected": float(scores[1]),
            }
            f.write(json.dumps(row) + "\n")
    return path.stat().st_size


def read_pairs(n_rows: int, heldout_fraction: float = 0.1) -> dict:
    from pipeline.corpora import scored_files, scored_layouts
    from pipeline.corpora.scored_groups import ragged_pairs

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ultrafeedback_binarized_synthetic.jsonl"
        size = write_rows(path, n_rows)
        start = time.perf_counter()
        data = scored_layouts.read_data(str(path))
        read = time.perf_counter() - start
        train, _ = scored_files.split_groups(data.n_groups, heldout_fraction, 0)
        pairs = ragged_pairs([data.groups[i].scores for i in train])
        total = time.perf_counter() - start
    return {
        "rows": n_rows,
        "file_mb": size / 2**20,
        "layout_line": data.layout_line,
        "groups": data.n_groups,
        "train_pairs": len(pairs),
        "read_seconds": read,
        "seconds": total,
        "rows_per_s": n_rows / total,
    }
