"""Reporting: run tables, figures, summary.md, win rates and the study, all read from the
tables a run wrote. Names no loss: every series, head-to-head and frontier follows the
``loss`` column, with DPO as the baseline.

May import ``pipeline.tasks`` and the layers below it; never ``pipeline.stages`` or
``pipeline.orchestration``."""
