"""Stage 4, sample: several completions per prompt from the SFT model.

Each seed gives a different sample set (the seed is part of the stage key).
Prompts are the first ``prompt_tokens`` tokens of each review, after a BOS token.

With ``samples_file`` set, the responses come from that file instead (one prompt
per line, see ``pipeline.io.read_samples_file``), tokenized the same way; the
stage is keyed by the file's sha256 and shared by every seed.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import models
from pipeline.cache import Artifact, Cache, atomic_write_json, file_sha256
from pipeline.errors import DataError
from pipeline.io import read_jsonl, read_samples_file
from pipeline.seeding import set_seed

# Bump when this stage's output changes for the same config (part of its cache key).
VERSION = 1
# The samples file's own scores, when it has them (read by the score stage).
GIVEN_SCORES = "given_scores.json"


def make_prompts(tok, texts: list[str], prompt_tokens: int) -> list[list[int]]:
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return [[models.bos_id(tok), *t[:prompt_tokens]] for t in ids]


def generate(
    model_dir: Path,
    prompt_texts: list[str],
    sample_cfg: DictConfig,
    n_samples: int,
    seed: int,
    device: str,
    temperature: float | None = None,
    top_p: float | None = None,
) -> dict:
    """Sample and package prompts, response ids and decoded texts (prompt + response).

    ``temperature``/``top_p`` default to the sample config's values."""
    set_seed(seed)
    tok = models.load_tokenizer(model_dir)
    model = models.load_model(model_dir, device)
    prompts = make_prompts(tok, prompt_texts, sample_cfg.prompt_tokens)
    responses = models.sample(
        model,
        prompts,
        n_samples=n_samples,
        max_new_tokens=sample_cfg.max_new_tokens,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        temperature=sample_cfg.temperature if temperature is None else temperature,
        top_p=sample_cfg.top_p if top_p is None else top_p,
        batch_size=sample_cfg.batch_size,
        generator_seed=seed,
        progress=True,
    )
    prompt_text = tok.batch_decode(prompts, skip_special_tokens=True)
    texts = [
        [prompt_text[i] + tok.decode(r, skip_special_tokens=True) for r in rs]
        for i, rs in enumerate(responses)
    ]
    return {"prompts": prompts, "responses": responses, "texts": texts}


def max_positions(model_dir: Path) -> int | None:
    """The longest sequence the saved model takes (None when its config does not say)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(name), int):
            return config[name]
    return None


def from_file(model_dir: Path, rows: list[dict], path: Path) -> dict:
    """Package a samples file as ``generate`` packages samples.

    Prompt: BOS + all of the prompt's tokens (not cut to ``prompt_tokens``: the file
    says where the prompt ends). Response: its tokens + EOS, as a sampled response
    that finished (``models.sample`` keeps the EOS it stops at). Texts: prompt +
    response as written in the file, which is what the scorer reads."""
    tok = models.load_tokenizer(model_dir)
    bos, eos = models.bos_id(tok), tok.eos_token_id
    end = [] if eos is None else [eos]
    limit = max_positions(model_dir)
    prompt_ids = tok([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    flat = [text for r in rows for text in r["responses"]]
    response_ids = tok(flat, add_special_tokens=False)["input_ids"]
    prompts, responses, k = [], [], 0
    for row, ids in zip(rows, prompt_ids, strict=True):
        prompt, group = [bos, *ids], []
        for i in range(len(row["responses"])):
            response, k = response_ids[k], k + 1
            where = f"samples_file {path} line {row['line']}: response {i}"
            if eos is not None and eos in response:
                raise DataError(f"{where} contains the end-of-text token {tok.eos_token!r}")
            if limit is not None and len(prompt) + len(response) + len(end) > limit:
                raise DataError(
                    f"{where}: prompt + response are {len(prompt) + len(response) + len(end)} "
                    f"tokens (with BOS and EOS), more than the model's {limit} positions"
                )
            group.append(response + end)
        prompts.append(prompt)
        responses.append(group)
    texts = [[r["prompt"] + text for text in r["responses"]] for r in rows]
    return {"prompts": prompts, "responses": responses, "texts": texts}


def load(artifact: Artifact) -> dict:
    return json.loads((artifact / "samples.json").read_text())


def load_given_scores(artifact: Artifact) -> list[list[float]] | None:
    """The samples file's scores (n_prompts, n_samples), or None when the scorer scores."""
    path = artifact / GIVEN_SCORES
    return json.loads(path.read_text()) if path.is_file() else None


def params(cfg: DictConfig) -> dict:
    """Every sampling setting and the seed; for a samples file, only its contents."""
    if OmegaConf.select(cfg, "samples_file"):
        return {"samples_file_sha256": file_sha256(samples_path(cfg))}
    return {"sample": OmegaConf.to_container(cfg.scale.sample), "seed": cfg.seed}


def samples_path(cfg: DictConfig) -> Path:
    path = Path(cfg.samples_file).expanduser()
    if not path.is_file():
        raise DataError(f"samples_file {path} does not exist")
    return path


def run(cfg: DictConfig, cache: Cache, sft: Artifact, prompts: Artifact) -> Artifact:
    if OmegaConf.select(cfg, "samples_file"):
        return run_from_file(cfg, cache, sft)
    sample_cfg = cfg.scale.sample

    def build(out: Path) -> dict:
        texts = [
            r["text"] for r in read_jsonl(prompts / "sample_prompts.jsonl", required=("text",))
        ]
        samples = generate(
            sft / "model", texts, sample_cfg, sample_cfg.n_samples, cfg.seed, cfg.device
        )
        atomic_write_json(out / "samples.json", samples)
        n = sum(len(r) for rs in samples["responses"] for r in rs)
        print(
            f"[sample] seed {cfg.seed}: {len(texts)} prompts x {sample_cfg.n_samples} samples, {n} tokens"
        )
        return {"n_prompts": len(texts), "n_samples": sample_cfg.n_samples}

    return cache.stage("sample", params(cfg), [sft, prompts], build, version=VERSION)


def run_from_file(cfg: DictConfig, cache: Cache, sft: Artifact) -> Artifact:
    """The sample set read from ``samples_file``. Keyed by the file's contents (not its
    path) and the SFT tokenizer; the seed and sampling settings do not enter."""
    path = samples_path(cfg)
    digest = params(cfg)["samples_file_sha256"]

    def build(out: Path) -> dict:
        rows = read_samples_file(path)
        samples = from_file(sft / "model", rows, path)
        atomic_write_json(out / "samples.json", samples)
        given = rows[0]["scores"] is not None
        if given:
            atomic_write_json(out / GIVEN_SCORES, [r["scores"] for r in rows])
        n_samples = len(rows[0]["responses"])
        n = sum(len(r) for rs in samples["responses"] for r in rs)
        print(
            f"[sample] {path.name}: {len(rows)} prompts x {n_samples} responses, {n} tokens"
            f"{', scores given' if given else ''}"
        )
        return {
            "n_prompts": len(rows),
            "n_samples": n_samples,
            "samples_file_sha256": digest,
            "given_scores": given,
        }

    return cache.stage("sample", params(cfg), [sft], build, version=VERSION)
