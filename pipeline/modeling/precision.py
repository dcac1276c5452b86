"""Numeric precision of every model computation: one root key, ``precision``.

- ``fp32``: plain float32 everywhere (the CPU default; every committed grid).
- ``tf32``: float32 weights and activations, matrix products on CUDA tensor cores in
  TF32 (10-bit mantissa inputs, float32 accumulation). CUDA only.
- ``bf16``: mixed precision: float32 weights and optimizer state, forward and
  backward matrix products under ``torch.autocast`` in bfloat16 (the CUDA default).
  Sampling on CUDA loads the weights in bfloat16 (``inference_dtype``): autocast casts
  every weight again at each decoding step, which made bf16 sampling of GPT-2 Large half
  as fast as fp32 on an H200. The reference log-probs are computed exactly as the
  policy's (float32 weights under autocast), so DPO's first loss is log 2.
  Log-probabilities are always reduced in float32 (``models.sequence_logps``).
- ``auto`` (the default): ``bf16`` on CUDA; on a CPU ``bf16`` when the model allows it
  (``model.cpu_bf16``: the pretrained models, not the 0.33M embedded one) and the CPU
  has bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``), ``fp32`` otherwise.

The resolved precision enters the cache key of every stage that runs a model, except
``fp32``, which adds nothing: keys from before this setting existed stay valid.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig

from pipeline.infra.errors import ConfigError

PRECISIONS = ("fp32", "tf32", "bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (without it autocast is slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(precision: str | None, device: str, cpu_bf16: bool = False) -> str:
    """``auto``/None -> bf16 on CUDA, and on a bf16-capable CPU for a model that allows
    it (``cpu_bf16``), fp32 otherwise; refuses what the device cannot do."""
    on_cuda = str(device).startswith("cuda")
    if precision in (None, "auto"):
        if on_cuda:
            return "bf16"
        return "bf16" if cpu_bf16 and cpu_has_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: choose one of auto, {', '.join(PRECISIONS)}")
    if precision == "tf32" and not on_cuda:
        raise ConfigError(
            f"precision=tf32 is a CUDA tensor-core mode and device={device}: use fp32 or bf16"
        )
    return precision


def of(cfg: DictConfig) -> str:
    """The run's resolved precision."""
    model = cfg.get("model") or {}
    return resolve(cfg.get("precision"), cfg.device, bool(model.get("cpu_bf16", False)))


def key(cfg: DictConfig) -> dict:
    """What a model-running stage adds to its cache key: nothing for fp32."""
    p = of(cfg)
    return {} if p == "fp32" else {"precision": p}


def inference_dtype(precision: str, device: str = "cuda") -> str:
    """The weight dtype of a sampling pass: bfloat16 weights under bf16 on CUDA (autocast
    would cast every weight at each decoding step); on a CPU float32 weights under
    autocast, so that sampling computes as training does. Log-probabilities that enter a
    loss (the reference) always come from float32 weights under autocast, as the policy's."""
    return "bfloat16" if precision == "bf16" and str(device).startswith("cuda") else "float32"


def configure(precision: str) -> None:
    """Process-wide switches: TF32 matrix products only when asked for."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


@contextlib.contextmanager
def autocast(precision: str, device: str | torch.device) -> Iterator[None]:
    """bfloat16 autocast for ``bf16``; nothing for fp32/tf32."""
    if precision != "bf16":
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        yield
