"""Cache-key sensitivity as a property, with its cases generated from the config tree.

One micro run records which config keys each stage reads (every attribute, item,
``get``, ``select`` and ``to_container`` on the config while that stage runs). Then,
for every leaf of the composed config:
- each stage that read it must get a different cache key when it changes, unless
  the stage lists it in its ``NOT_IN_KEY`` (or it is a runtime key such as the
  device), in which case its key must stay the same;
- a leaf that no stage reads must change no stage's key (no needless recomputation).
Keys are taken from ``pipeline.orchestration.graph``, which a test here holds equal to the keys a
real run uses. A new config key is covered without a new test.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf
from omegaconf.basecontainer import BaseContainer

from pipeline.orchestration import graph as plan
from pipeline.orchestration.fingerprint import leaves
from tests.conftest import ROOT, ledger, micro_config

STAGES = plan.STAGE_MODULES
# Leaves whose generic change would not be a usable value, with one that is.
# Values that must name something real: another scale picks the task's other per-scale values.
SPECIAL_VALUES = {
    "scale.name": "embedded",
    "scorer.name": "hf_pipeline",
    "task.name": "toxicity",
    "precision": "bf16",  # a valid precision on CPU (tf32 is CUDA only)
}


@contextmanager
def recording_reads() -> Iterator[dict[str, set[str]]]:
    """stage -> full config keys it read: leaves, and subtrees it converted whole."""
    reads: dict[str, set[str]] = defaultdict(set)
    current: list[str] = []
    saved = {
        "getattr": DictConfig.__getattr__,
        "getitem": DictConfig.__getitem__,
        "get": DictConfig.get,
        "to_container": OmegaConf.to_container,
        "select": OmegaConf.select,
    }

    def note(node: DictConfig, key: object, value: object) -> None:
        if current and not isinstance(value, BaseContainer):
            reads[current[-1]].add(node._get_full_key(key))

    def getattr_(self, key):
        value = saved["getattr"](self, key)
        note(self, key, value)
        return value

    def getitem(self, key):
        value = saved["getitem"](self, key)
        note(self, key, value)
        return value

    def get(self, key, default_value=None):
        value = saved["get"](self, key, default_value)
        note(self, key, value)
        return value

    def to_container(cfg, *args, **kwargs):
        if current and isinstance(cfg, BaseContainer):
            reads[current[-1]].add(cfg._get_full_key("") + ".*")
        return saved["to_container"](cfg, *args, **kwargs)

    def select(cfg, key, *args, **kwargs):
        if current:
            prefix = cfg._get_full_key("")
            reads[current[-1]].add(f"{prefix}.{key}" if prefix else key)
        return saved["select"](cfg, key, *args, **kwargs)

    wrapped = {}
    for name, module in STAGES.items():
        original = module.run

        def run(*args, _original=original, _name=name, **kwargs):
            current.append(_name)
            try:
                return _original(*args, **kwargs)
            finally:
                current.pop()

        wrapped[name] = original
        module.run = run
    DictConfig.__getattr__ = getattr_
    DictConfig.__getitem__ = getitem
    DictConfig.get = get
    OmegaConf.to_container = staticmethod(to_container)
    OmegaConf.select = staticmethod(select)
    try:
        yield reads
    finally:
        DictConfig.__getattr__ = saved["getattr"]
        DictConfig.__getitem__ = saved["getitem"]
        DictConfig.get = saved["get"]
        OmegaConf.to_container = staticmethod(saved["to_container"])
        OmegaConf.select = staticmethod(saved["select"])
        for name, module in STAGES.items():
            module.run = wrapped[name]


def _config_leaves() -> dict[str, object]:
    import tempfile

    cfg = micro_config(Path(tempfile.gettempdir()) / "cache-keys-collect")
    return leaves(OmegaConf.to_container(cfg, resolve=True))


LEAVES = _config_leaves()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[DictConfig, dict, list[dict]]:
    """A full micro run with every stage's config reads recorded, and its ledger."""
    from pipeline.orchestration.main import run_experiment

    tmp = tmp_path_factory.mktemp("traced")
    cfg = micro_config(tmp)
    with recording_reads() as reads:
        run_experiment(cfg)
    expanded: dict[str, set[str]] = {}
    for stage, keys in reads.items():
        expanded[stage] = {
            leaf
            for leaf in LEAVES
            for key in keys
            if leaf == key or (key.endswith(".*") and leaf.startswith(key[:-1]))
        }
    return cfg, expanded, ledger(tmp)


def changed(value: object, key: str) -> object:
    """A different value of the same kind."""
    if key in SPECIAL_VALUES:
        return SPECIAL_VALUES[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 0.125
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, list):
        return [*value, "changed"]
    if value is None:
        return "changed"
    raise TypeError(f"{key}: no rule to change a {type(value).__name__}")


def with_leaf(cfg: DictConfig, key: str, value: object) -> DictConfig:
    other = copy.deepcopy(cfg)
    OmegaConf.update(other, key, value, merge=False, force_add=True)
    return other


def plan_names(stage: str) -> list[str]:
    """The plan's names for a stage's outputs (evaluation runs twice per run)."""
    return ["evaluate", "evaluate_sft"] if stage == "evaluate" else [stage]


def test_plan_gives_the_keys_a_run_uses(traced) -> None:
    cfg, _, entries = traced
    planned = plan.stage_keys(cfg)
    used = {(e["stage"], e["key"]) for e in entries if e["stage"] != "plot"}
    assert used == {(name.removesuffix("_sft"), key) for name, key in planned.items()}


def test_every_stage_reads_some_config(traced) -> None:
    # Guards the recorder: if it stopped seeing reads, the property would hold vacuously.
    _, reads, _ = traced
    assert set(reads) >= {"data", "prompts", "sft", "classifier", "sample", "pairs", "train"}
    assert "scale.sft.lr" in reads["sft"] and "scale.sample.temperature" in reads["sample"]


def test_not_in_key_lists_name_real_config_keys() -> None:
    for stage, keys in plan.NOT_IN_KEY.items():
        for key in keys:
            assert key in LEAVES, f"{stage}.NOT_IN_KEY names {key}, which is not a config key"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_changing_a_config_key_changes_exactly_the_keys_of_stages_that_read_it(
    traced, leaf: str
) -> None:
    cfg, reads, _ = traced
    before = plan.stage_keys(cfg)
    after = plan.stage_keys(with_leaf(cfg, leaf, changed(LEAVES[leaf], leaf)))
    readers = [stage for stage, keys in reads.items() if leaf in keys]
    for stage in readers:
        exempt = leaf in plan.RUNTIME_KEYS or leaf in plan.NOT_IN_KEY.get(stage, ())
        for name in plan_names(stage):
            if name not in before and name not in after:
                continue  # the stage makes no artifact either way (heldout for sentiment)
            if exempt:
                assert after[name] == before[name], (
                    f"{leaf} is declared not to change {stage}'s output, but its key moved"
                )
            else:
                assert after[name] != before[name], (
                    f"{stage} reads {leaf} but its cache key ignores it: a changed {leaf} "
                    f"would silently reuse a stale {stage} artifact"
                )
    if not readers:
        assert after == before, f"no stage reads {leaf}, yet changing it moves cache keys"


@pytest.mark.parametrize(
    "overrides",
    [
        ["task=toxicity"],
        ["task=custom", f"data.path={ROOT / 'tests/fixtures/custom_grouped.jsonl'}"],
    ],
    ids=["toxicity", "custom"],
)
def test_plan_gives_the_keys_a_run_uses_for_every_task(tmp_path: Path, overrides) -> None:
    """The other tasks' paths through the stages (response-only scoring, the other label
    good; no classifier and the task's own scores) are planned as they run."""
    from pipeline.orchestration.main import run_experiment

    cfg = micro_config(tmp_path, *overrides, "data.heldout_fraction=0.4")
    run_experiment(cfg)
    planned = plan.stage_keys(cfg)
    used = {(e["stage"], e["key"]) for e in ledger(tmp_path) if e["stage"] != "plot"}
    assert used == {(name.removesuffix("_sft"), key) for name, key in planned.items()}
    # The task is part of the data key: another task never reuses these splits.
    from pipeline.stages import data

    assert data.params(with_leaf(cfg, "task.name", "sentiment")) != data.params(cfg)
