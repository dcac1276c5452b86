"""What a run keeps of a trained policy: its weights go once their evaluation is
published (``keep_weights=false``, the paper scale's default, where a GPT-2 Large policy
is 3 GB), and a policy whose weights went is trained again when an evaluation it has not
had needs them."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.infra.cache import Artifact, Cache
from pipeline.orchestration import graph


def published(cfg: DictConfig, cache: Cache, name: str, arts: dict) -> bool:
    """Whether the artifact stage ``name`` would make from ``arts`` is in the cache (its
    manifest is written last)."""
    stage = graph.BY_NAME[name]
    found = graph.identity(stage, cfg, [arts.get(i) for i in stage.inputs])
    if found is None:
        return True
    params, inputs = found
    key = cache.key(stage.cache_name, params, inputs, version=stage.module.VERSION)
    return (cache.root / stage.cache_name / key / "manifest.json").is_file()


def weights_needed_again(cfg: DictConfig, cache: Cache, arts: dict) -> bool:
    """The reused policy's weights were deleted and its evaluation is not in the cache."""
    trained: Artifact = arts["train"]
    return bool(trained.info.get("weights_deleted")) and not published(cfg, cache, "evaluate", arts)


def release_weights(cfg: DictConfig, cache: Cache, trained: Artifact) -> Artifact:
    """Delete the policy's weights under ``keep_weights=false``: its evaluation is
    published and stands on its own, and the manifest records the deletion."""
    if cfg.keep_weights or trained.info.get("weights_deleted"):
        return trained
    weights = [f"model/{p.name}" for p in (trained / "model").glob("*.safetensors")]
    return cache.forget_files(trained, weights, {"weights_deleted": True})
