"""Scoring: the scorer registry (classifiers that give p(label) of a text), the offline
summary rater, and the judges of summaries (offline and OpenAI-compatible) with the value
types they share.

May import ``pipeline.corpora``, ``pipeline.modeling``, ``pipeline.infra``, ``pipeline.math``."""
