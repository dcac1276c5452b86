"""Numeric precision of every model computation: one root key, ``precision``.

- ``fp32``: plain float32 everywhere (the CPU default; every committed grid).
- ``tf32``: float32 weights and activations, matrix products on CUDA tensor cores in
  TF32 (10-bit mantissa inputs, float32 accumulation). CUDA only.
- ``bf16``: mixed precision: float32 weights and optimizer state, forward and
  backward matrix products under ``torch.autocast`` in bfloat16 (the CUDA default).
  The no-gradient passes (sampling, the reference log-probs) load the weights in
  bfloat16 (``inference_dtype``), so the reference pass is in half precision as in the
  authors' code. Not autocast there: it casts every weight again at each decoding
  step, which made bf16 sampling of GPT-2 Large half as fast as fp32 on an H200.
  Log-probabilities are always reduced in float32 (``models.sequence_logps``).
- ``auto`` (the default): ``bf16`` on CUDA, ``fp32`` elsewhere.

The resolved precision enters the cache key of every stage that runs a model, except
``fp32``, which adds nothing: keys from before this setting existed stay valid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from omegaconf import DictConfig

from pipeline.infra.errors import ConfigError

PRECISIONS = ("fp32", "tf32", "bf16")


def resolve(precision: str | None, device: str) -> str:
    """``auto``/None -> bf16 on CUDA, fp32 elsewhere; refuses what the device cannot do."""
    on_cuda = str(device).startswith("cuda")
    if precision in (None, "auto"):
        return "bf16" if on_cuda else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: choose one of auto, {', '.join(PRECISIONS)}")
    if precision == "tf32" and not on_cuda:
        raise ConfigError(
            f"precision=tf32 is a CUDA tensor-core mode and device={device}: use fp32 or bf16"
        )
    return precision


def of(cfg: DictConfig) -> str:
    """The run's resolved precision."""
    return resolve(cfg.get("precision"), cfg.device)


def key(cfg: DictConfig) -> dict:
    """What a model-running stage adds to its cache key: nothing for fp32."""
    p = of(cfg)
    return {} if p == "fp32" else {"precision": p}


def inference_dtype(precision: str) -> str:
    """The weight dtype of a no-gradient pass (sampling, reference log-probs)."""
    return "bfloat16" if precision == "bf16" else "float32"


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
