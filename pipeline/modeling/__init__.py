"""Model mechanics: building and loading models and tokenizers, sampling and log-probs,
precision, optimizers, checkpoints, seeding, the preference-training loop and its
distributed (FSDP) form.

May import only ``pipeline.infra`` and ``pipeline.math``."""
