"""Readers of named data sets, each module named after its data set and shared by the
tasks that use it (Rotten Tomatoes, RealToxicityPrompts, XSum, Reddit TL;DR with
summarize_from_feedback) plus the reader of scored-sample files. No task logic.

May import only ``pipeline.infra`` and ``pipeline.math``."""
