"""The scored-data readers in every public layout and source (pipeline.corpora.scored_layouts):
pair rows with strings and with chat messages (with and without a prompt column), nested
completions (UltraFeedback-like) and ranks (Nectar-like), several score attributes
(HelpSteer2-like, .jsonl.gz), parquet, CSV, a saved ``datasets`` folder and a hub name
through a patched ``datasets.load_dataset``. Every fixture is written here, and every
pair count is checked against one computed from the fixture's own rows with
itertools; each bad input is one line naming the file, the row and the field."""

from __future__ import annotations

import gzip
import itertools
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.corpora.scored_layouts import read_data
from pipeline.corpora.scored_sources import fingerprint
from pipeline.infra.errors import ConfigError, DataError

LAYOUTS = Path(__file__).resolve().parent / "fixtures" / "layouts"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def bot(text: str) -> dict:
    return {"role": "assistant", "content": text}


def write_jsonl(path: Path, rows: list[dict], opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def pair_count(groups: dict) -> int:
    """Pairs with different scores within each group: ``{prompt: [(text, score), ...]}``."""
    return sum(
        a[1] != b[1] for items in groups.values() for a, b in itertools.combinations(items, 2)
    )


def merged(items: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Each text once (pair rows name a response once per pair)."""
    return list(dict(items).items())


def independent_pairs(rows: list[dict], prompt_of, sides) -> dict:
    """prompt -> [(text, score)] of pair rows, with plain dicts (no module code)."""
    groups: dict = {}
    for row in rows:
        for text, score in sides(row):
            groups.setdefault(prompt_of(row), []).append((text, score))
    return {k: merged(v) for k, v in groups.items()}


def check_counts(data, groups: dict) -> None:
    assert data.n_groups == len(groups)
    assert data.n_responses == sum(len(v) for v in groups.values())
    assert len(data.pairs()) == pair_count(groups)
    assert len(data.pairs()) > 0
    for g, c, r in data.pairs().tolist():
        assert data.groups[g].scores[c] > data.groups[g].scores[r]


# ---- pair rows ---------------------------------------------------------------------------

# Two prompts share rows; " sure." is in two pairs with one score; one pair ties.
PAIR_ROWS = [
    {"prompt": "Say hi", "chosen": " hello!", "rejected": " go away.", "score_chosen": 9.0,
     "score_rejected": 2.0},
    {"prompt": "Help me", "chosen": " sure.", "rejected": " no.", "score_chosen": 7.0,
     "score_rejected": 1.0},
    {"prompt": "Say hi", "chosen": " hi there", "rejected": " hello!", "score_chosen": 9.5,
     "score_rejected": 9.0},
    {"prompt": "Help me", "chosen": " sure.", "rejected": " maybe later.", "score_chosen": 7.0,
     "score_rejected": 4.0},
    {"prompt": "Be brief", "chosen": " ok", "rejected": " okay", "score_chosen": 5.0,
     "score_rejected": 5.0},
    {"prompt": "Be brief", "chosen": " k", "rejected": " okay then", "score_chosen": 6.0,
     "score_rejected": 3.0},
]  # fmt: skip


def string_sides(row: dict, c: str = "score_chosen", r: str = "score_rejected"):
    return [(row["chosen"], row[c]), (row["rejected"], row[r])]


def test_pair_rows_with_strings_in_parquet(tmp_path, capsys):
    path = tmp_path / "pairs.parquet"
    pd.DataFrame(PAIR_ROWS).to_parquet(path)
    data = read_data(str(path))
    groups = independent_pairs(PAIR_ROWS, lambda r: r["prompt"], string_sides)
    check_counts(data, groups)
    assert data.layout_line == (
        "[data] layout auto -> pairs (prompt, chosen, rejected, score_chosen, score_rejected) "
        f"in {path}"
    )
    assert data.unit == "row" and data.n_message_groups == 0
    help_me = data.groups[1]
    assert help_me.prompt == "Help me" and help_me.responses == [" sure.", " no.", " maybe later."]
    assert help_me.lines == [2, 2, 4]  # a response is kept at its first row


def test_pair_rows_in_csv_with_hyphenated_rating_names(tmp_path):
    rows = [{**{k: r[k] for k in ("prompt", "chosen", "rejected")},
             "chosen-rating": r["score_chosen"], "rejected-rating": r["score_rejected"]}
            for r in PAIR_ROWS]  # fmt: skip
    path = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    data = read_data(str(path))
    sides = lambda r: string_sides(r, "chosen-rating", "rejected-rating")  # noqa: E731
    check_counts(data, independent_pairs(rows, lambda r: r["prompt"], sides))
    assert "(prompt, chosen, rejected, chosen-rating, rejected-rating)" in data.layout_line


def chat_rows() -> list[dict]:
    """UltraFeedback-binarized: a prompt column and full conversations, ratings named
    chosen_rating/rejected_rating."""
    out = []
    for r in PAIR_ROWS:
        p = r["prompt"]
        out.append({"prompt": p, "chosen": [user(p), bot(r["chosen"])],
                    "rejected": [user(p), bot(r["rejected"])],
                    "chosen_rating": r["score_chosen"], "rejected_rating": r["score_rejected"]})  # fmt: skip
    return out


def test_pair_rows_with_messages_and_a_prompt_column_in_a_saved_datasets_folder(tmp_path):
    import datasets

    rows = chat_rows()
    folder = tmp_path / "saved"
    other = [dict(rows[0], prompt="Elsewhere", chosen=[user("Elsewhere"), bot(" x")])]
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(other), "test_prefs": datasets.Dataset.from_list(rows)}
    ).save_to_disk(str(folder))
    data = read_data(str(folder), split="test_prefs")
    sides = lambda r: [(r["chosen"][-1]["content"], r["chosen_rating"]),  # noqa: E731
                       (r["rejected"][-1]["content"], r["rejected_rating"])]  # fmt: skip
    check_counts(data, independent_pairs(rows, lambda r: r["prompt"], sides))
    assert data.n_message_groups == data.n_groups
    first = data.groups[0]
    assert first.prompt == "Say hi" and first.prompt_messages == [user("Say hi")]
    assert first.responses[0] == " hello!"  # the content string, not the message
    with pytest.raises(ConfigError, match=r"data.split='nope'.*test_prefs"):
        read_data(str(folder), split="nope")
    assert fingerprint(folder)  # the folder's files, for the task's read cache


def test_pair_rows_with_messages_and_no_prompt_column(tmp_path):
    """TRL's implicit prompt: the messages before the last assistant turn, here two turns
    of a conversation, so two rows with different histories are two groups."""
    rows = []
    for k, r in enumerate(PAIR_ROWS):
        history = [{"role": "system", "content": "Be kind."}, user(r["prompt"]), bot(" Hm?"),
                   user("Please" if k % 2 else "Now")]  # fmt: skip
        rows.append({"chosen": [*history, bot(r["chosen"])],
                     "rejected": [*history, bot(r["rejected"])],
                     "score_chosen": r["score_chosen"], "score_rejected": r["score_rejected"]})  # fmt: skip
    path = tmp_path / "implicit.parquet"
    pd.DataFrame(rows).to_parquet(path)
    data = read_data(str(path))
    key = lambda r: json.dumps(r["chosen"][:-1])  # noqa: E731
    sides = lambda r: [(r["chosen"][-1]["content"], r["score_chosen"]),  # noqa: E731
                       (r["rejected"][-1]["content"], r["score_rejected"])]  # fmt: skip
    groups = independent_pairs(rows, key, sides)
    check_counts(data, groups)
    assert "(implicit prompt, chosen, rejected" in data.layout_line
    first = data.groups[0]
    assert first.prompt_messages == rows[0]["chosen"][:-1]
    assert first.prompt == "system: Be kind.\n\nuser: Say hi\n\nassistant:  Hm?\n\nuser: Now"


def test_message_prompts_reach_the_task_rows(tmp_path):
    """task=custom's rows carry the messages beside the text (for the chat template)."""
    from pipeline.tasks.custom import TASK

    path = write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    cfg = task_config(path, heldout_fraction=0.34)
    TASK.check(cfg)
    train, held = TASK.load_splits(cfg)
    assert {r["text"] for r in train + held} == {"Say hi", "Help me", "Be brief"}
    assert all(r["messages"] == [user(r["text"])] for r in train + held)


# ---- nested completions ------------------------------------------------------------------

ULTRAFEEDBACK = [
    {"instruction": "Name a fruit.", "source": "x", "completions": [
        {"model": "a", "response": "Apple.", "overall_score": 8.5, "annotations": {}},
        {"model": "b", "response": "Car.", "overall_score": 2.0, "annotations": {}},
        {"model": "c", "response": "Pear.", "overall_score": 8.5, "annotations": {}}]},
    {"instruction": "Count to 2.", "source": "y", "completions": [
        {"model": "a", "response": "1 2", "overall_score": 9.0, "annotations": {}},
        {"model": "b", "response": "2 1", "overall_score": 3.5, "annotations": {}}]},
    {"instruction": "Name a fruit.", "source": "z", "completions": [
        {"model": "d", "response": "Plum.", "overall_score": 7.0, "annotations": {}}]},
]  # fmt: skip


def test_nested_completions_in_a_json_array(tmp_path):
    path = tmp_path / "ultrafeedback.json"
    path.write_text(json.dumps(ULTRAFEEDBACK))
    data = read_data(str(path))
    groups: dict = {}
    for row in ULTRAFEEDBACK:
        for c in row["completions"]:
            groups.setdefault(row["instruction"], []).append((c["response"], c["overall_score"]))
    check_counts(data, groups)
    assert data.layout_line == (
        "[data] layout auto -> nested (instruction, completions[].response, "
        f"completions[].overall_score) in {path}"
    )
    assert data.groups[0].lines == [1, 1, 1, 3]


NECTAR = [
    {"prompt": "\n\nHuman: Tell a joke.\n\nAssistant:", "answers": [
        {"answer": "Knock knock.", "model": "m1", "rank": 2},
        {"answer": "Why did...", "model": "m2", "rank": 1},
        {"answer": "No.", "model": "m3", "rank": 3}], "turns": 1},
    {"prompt": "\n\nHuman: Say yes.\n\nAssistant:", "answers": [
        {"answer": "Yes.", "model": "m1", "rank": 1},
        {"answer": "Maybe.", "model": "m2", "rank": 2}], "turns": 1},
]  # fmt: skip


def test_nested_ranks_lower_is_better(tmp_path):
    path = write_jsonl(tmp_path / "nectar.jsonl", NECTAR)
    data = read_data(str(path))
    groups = {r["prompt"]: [(a["answer"], -a["rank"]) for a in r["answers"]] for r in NECTAR}
    check_counts(data, groups)
    assert data.layout_line.endswith("; score_transform=rank: score = -answers[].rank")
    joke = data.groups[0]
    assert joke.scores == [-2.0, -1.0, -3.0]
    best = [joke.responses[c] for g, c, _ in data.pairs().tolist() if g == 0]
    assert best.count("Why did...") == 2  # rank 1 is chosen over both others
    same = read_data(str(path), transform="negate")
    assert [g.scores for g in same.groups] == [g.scores for g in data.groups]
    raw = read_data(str(path), transform="identity")
    assert raw.groups[0].scores == [2.0, 1.0, 3.0]


def test_explicit_paths_and_a_layout_that_does_not_fit(tmp_path):
    path = write_jsonl(tmp_path / "nectar.jsonl", NECTAR)
    fields = {"responses_field": "answers[].answer", "scores_field": "answers[].rank"}
    data = read_data(str(path), layout="nested", fields=fields, transform="rank")
    assert len(data.pairs()) == 4 and data.layout_line.startswith("[data] layout nested (")
    with pytest.raises(DataError, match=r"nectar\.jsonl line 1: not a pairs row: missing field"):
        read_data(str(path), layout="pairs")
    with pytest.raises(ConfigError, match="data.layout='rows'"):
        read_data(str(path), layout="rows")


# ---- flat rows with several attributes ---------------------------------------------------

HELPSTEER = [
    {"prompt": "Why is the sky blue?", "response": "Rayleigh scattering.", "helpfulness": 4,
     "correctness": 4, "coherence": 4, "complexity": 2, "verbosity": 1},
    {"prompt": "Why is the sky blue?", "response": "Because.", "helpfulness": 1,
     "correctness": 3, "coherence": 4, "complexity": 0, "verbosity": 0},
    {"prompt": "2+2?", "response": "4", "helpfulness": 4, "correctness": 4, "coherence": 4,
     "complexity": 0, "verbosity": 0},
    {"prompt": "Why is the sky blue?", "response": "Light scatters off air.", "helpfulness": 3,
     "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 1},
    {"prompt": "2+2?", "response": "5", "helpfulness": 0, "correctness": 0, "coherence": 4,
     "complexity": 0, "verbosity": 0},
]  # fmt: skip


@pytest.mark.parametrize("attribute", ["helpfulness", "correctness"])
def test_several_attributes_in_jsonl_gz(tmp_path, attribute):
    path = write_jsonl(tmp_path / "helpsteer.jsonl.gz", HELPSTEER, gzip.open)
    data = read_data(str(path), fields={"score_field": attribute})
    groups: dict = {}
    for row in HELPSTEER:
        groups.setdefault(row["prompt"], []).append((row["response"], row[attribute]))
    check_counts(data, groups)
    assert data.layout_line == (
        f"[data] layout auto -> flat (prompt, response, {attribute}) in {path}"
    )


def test_several_attributes_need_a_choice(tmp_path):
    path = write_jsonl(tmp_path / "helpsteer.jsonl.gz", HELPSTEER, gzip.open)
    with pytest.raises(ConfigError, match=r"line 1 has several score attributes "
                       r"\(helpfulness, correctness, .*\); choose one with data.score_field"):  # fmt: skip
        read_data(str(path))


def test_todays_layouts_through_auto():
    from pipeline.corpora.scored_files import read_scored

    root = LAYOUTS.parent
    for name in ("custom_flat.jsonl", "custom_grouped.jsonl"):
        auto, today = read_data(str(root / name)), read_scored(root / name)
        assert [(g.prompt, g.responses, g.scores, g.lines) for g in auto.groups] == [
            (g.prompt, g.responses, g.scores, g.lines) for g in today.groups
        ]
    assert (
        "auto -> grouped (prompt, responses, scores)"
        in read_data(str(root / "custom_grouped.jsonl")).layout_line
    )


def test_committed_tiny_fixture_in_the_ultrafeedback_binarized_layout():
    data = read_data(str(LAYOUTS / "binarized.jsonl"))
    rows = [json.loads(x) for x in (LAYOUTS / "binarized.jsonl").read_text().splitlines()]
    sides = lambda r: [(r["chosen"][-1]["content"], r["score_chosen"]),  # noqa: E731
                       (r["rejected"][-1]["content"], r["score_rejected"])]  # fmt: skip
    check_counts(data, independent_pairs(rows, lambda r: r["prompt"], sides))


# ---- the hub -----------------------------------------------------------------------------


def test_a_hub_name_through_a_patched_load_dataset(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, split=None, revision=None, **kwargs):
        calls.append((name, split, revision))
        return datasets.Dataset.from_list(chat_rows())

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = read_data(hf_name="someone/prefs", split="train_prefs", revision="abc123")
    assert calls == [("someone/prefs", "train_prefs", "abc123")]
    sides = lambda r: [(r["chosen"][-1]["content"], r["chosen_rating"]),  # noqa: E731
                       (r["rejected"][-1]["content"], r["rejected_rating"])]  # fmt: skip
    check_counts(data, independent_pairs(chat_rows(), lambda r: r["prompt"], sides))
    assert (
        data.path == "someone/prefs[train_prefs]"
        and data.row(3) == "someone/prefs[train_prefs] row 3"
    )


def test_a_hub_name_offline_is_one_line_naming_the_key(monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("no hub offline"))
    with pytest.raises(
        ConfigError, match=r"data.hf_name='someone/prefs' needs the Hugging Face"
    ) as e:
        read_data(hf_name="someone/prefs")
    assert "\n" not in str(e.value)


def test_the_task_refuses_a_hub_name_offline_at_start_up(monkeypatch):
    from pipeline.tasks.custom import TASK

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = task_config(None, hf_name="someone/prefs")
    with pytest.raises(ConfigError, match="data.hf_name"):
        TASK.check(cfg)


# ---- bad input: one line naming the file, the row and the field -------------------------

GOOD = PAIR_ROWS[0]
BAD = {
    "missing field": ({k: v for k, v in GOOD.items() if k != "score_rejected"},
                      r"line 3: missing field 'score_rejected'"),
    "non-finite score": ({**GOOD, "score_chosen": float("inf")},
                         r"line 3: 'score_chosen' is inf; scores must be finite"),
    "score not a number": ({**GOOD, "score_chosen": "high"}, r"line 3: 'score_chosen' .* not a number"),
    "chosen equals rejected": ({**GOOD, "rejected": GOOD["chosen"]},
                               r"line 3: 'chosen' and 'rejected' are the same response"),
    "empty prompt": ({**GOOD, "prompt": ""}, r"line 3: 'prompt' is empty"),
    "no assistant turn": ({**chat_rows()[0], "chosen": [user("Say hi")]},
                          r"line 3: 'chosen' has no assistant message"),
    "bad message": ({**chat_rows()[0], "rejected": [user("Say hi"), {"role": "assistant"}]},
                    r"line 3: 'rejected'\[1\] must be a message \{role, content\}"),
    "duplicate with two scores": ({**GOOD, "chosen": " hi there", "score_rejected": 3.0},
                                  r"line 1 \('rejected'\) and line 3 \('rejected'\): the response "
                                  r"' go away.' to one prompt has two scores, 2 and 3"),
}  # fmt: skip


@pytest.mark.parametrize(("row", "message"), BAD.values(), ids=BAD.keys())
def test_bad_pair_rows(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, PAIR_ROWS[1], row, PAIR_ROWS[3]])
    with pytest.raises(DataError) as e:
        read_data(str(path))
    assert str(e.value).startswith(f"{path} ") and "\n" not in str(e.value)
    assert re.search(message, str(e.value)), str(e.value)


def test_bad_implicit_prompt_and_nested_rows(tmp_path):
    only_answer = {"chosen": [bot("a")], "rejected": [bot("b")], "score_chosen": 1,
                   "score_rejected": 0}  # fmt: skip
    path = write_jsonl(tmp_path / "implicit.jsonl", [only_answer])
    with pytest.raises(DataError, match=r"implicit\.jsonl line 1: 'chosen' has no message "
                       "before its last assistant turn, so the prompt is empty"):  # fmt: skip
        read_data(str(path))
    rows = [ULTRAFEEDBACK[0], {**ULTRAFEEDBACK[1], "completions": [
        {"response": "1 2", "overall_score": 9.0}, {"response": "2 1"}]}]  # fmt: skip
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"nested\.json row 2: missing field "
                       r"'completions\[1\]\.overall_score'"):  # fmt: skip
        read_data(str(path))
    rows[1]["completions"][1]["overall_score"] = float("nan")
    path.write_text(json.dumps(rows))  # json writes NaN, and reads it back
    with pytest.raises(DataError, match=r"row 2: 'completions\[1\]\.overall_score' is nan"):
        read_data(str(path))
    rows[1]["completions"] = [{"response": "1 2", "overall_score": 9.0},
                              {"response": "1 2", "overall_score": 3.0}]  # fmt: skip
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"row 2 \('completions\[0\]\.response'\) and row 2 "
                       r"\('completions\[1\]\.response'\).*two scores, 9 and 3"):  # fmt: skip
        read_data(str(path))


def test_a_csv_with_an_empty_score_cell_names_its_row(tmp_path):
    path = tmp_path / "flat.csv"
    path.write_text("prompt,response,reward\np,a,1\np,b,\nq,c,2\n")
    with pytest.raises(DataError, match=r"flat\.csv row 2: 'reward' is nan"):
        read_data(str(path))


def test_a_bad_row_stops_the_task_at_start_up(tmp_path):
    from pipeline.tasks.custom import TASK

    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, {**GOOD, "prompt": ""}])
    with pytest.raises(DataError, match=r"bad\.jsonl line 2: 'prompt' is empty"):
        TASK.check(task_config(path))


def task_config(path: Path | None, **data):
    """The custom task's data settings as conf/task/custom.yaml gives them."""
    conf = OmegaConf.load(Path(__file__).resolve().parent.parent / "conf/task/custom.yaml")
    settings = {k: conf.data[k] for k in conf.data if k != "download_dir"}
    settings.update(path=None if path is None else str(path), **data)
    return OmegaConf.create(
        {"data": settings, "loss": {"name": "dpo"}, "offset": {"name": "log_diff"}}
    )


# ---- the data stage's key: a folder by its files, a hub name by its commit -------------


def data_key(tmp: Path, *overrides: str) -> str:
    from pipeline.infra.atomic import stable_hash
    from pipeline.stages import data
    from tests.conftest import micro_config

    return stable_hash(data.params(micro_config(tmp, "task=custom", *overrides)))


def test_a_saved_datasets_folder_is_keyed_by_its_contents(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_list(PAIR_ROWS).save_to_disk(str(folder))
    before = data_key(tmp_path, f"data.path={folder}")
    assert data_key(tmp_path, f"data.path={folder}") == before  # the same files: the same key
    edited = [dict(PAIR_ROWS[0], score_chosen=9.5), *PAIR_ROWS[1:]]
    datasets.Dataset.from_list(edited).save_to_disk(str(tmp_path / "edited"))
    import shutil

    shutil.rmtree(folder)
    shutil.copytree(tmp_path / "edited", folder)  # edited in place, same folder name
    assert data_key(tmp_path, f"data.path={folder}") != before


def test_a_hub_name_is_keyed_by_the_commit_it_stands_for(tmp_path, monkeypatch):
    import huggingface_hub

    commits = iter(["1111aaaa", "2222bbbb"])
    asked = []

    class FakeApi:
        def dataset_info(self, name, revision=None):
            asked.append((name, revision))
            return type("Info", (), {"sha": next(commits)})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    first = data_key(tmp_path, "data.hf_name=someone/prefs")
    second = data_key(tmp_path, "data.hf_name=someone/prefs")  # main moved on
    assert first != second and asked == [("someone/prefs", None)] * 2
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the revision as given, no call
    assert data_key(tmp_path, "data.hf_name=someone/prefs", "data.revision=abc") != first
    assert len(asked) == 2
