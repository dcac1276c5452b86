"""``python -m pipeline.bench``: see ``pipeline/bench/__init__.py``."""

from pipeline.bench.child import quiet_env

quiet_env()  # before torch is imported

from pipeline.bench.run import main  # noqa: E402

main()
