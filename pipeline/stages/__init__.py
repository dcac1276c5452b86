"""The stages, one cached stage per module: ``run(cfg, cache, *inputs)`` builds (or reuses)
the stage's content-addressed directory. Their wiring is ``pipeline.orchestration.graph``.

No stage imports another; they share only ``artifacts`` (how each stage's outputs are
read back). May import ``pipeline.tasks`` and the layers below it."""
