"""Scored preference data in any of its public layouts (``data.layout``), from any source.

* ``grouped`` / ``flat``: ``scored_files`` (one reader; a file may mix the two per line).
  A flat row with several score attributes (HelpSteer2's helpfulness, correctness, ...)
  takes the one ``data.score_field`` names.
* ``pairs``: ``prompt``, ``chosen``, ``rejected``, ``score_chosen``, ``score_rejected``
  (UltraFeedback-binarized; also ``chosen_rating``/``rejected_rating`` and
  ``chosen-rating``/``rejected-rating``). chosen/rejected are strings or chat message
  lists; the response is then the last assistant message's content, and without a
  prompt column the prompt is the messages before it (TRL's implicit prompt). Pairs
  sharing a prompt join one group; a response seen in several pairs is kept once.
* ``nested``: a prompt and a list of objects, each a response and its score, named by
  paths: ``completions[].response`` / ``completions[].overall_score`` (UltraFeedback),
  ``answers[].answer`` / ``answers[].rank`` (Nectar, with ``score_transform=rank``).

``auto`` decides from the first row's fields and says what it found (``layout_line``).
Field settings left None take the layout's usual names, looked up in the first row."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.corpora import scored_files
from pipeline.corpora.scored_groups import GroupBuilder, ScoredData, score_transform, score_value
from pipeline.corpora.scored_messages import (
    get,
    has,
    last_assistant,
    list_values,
    lookup,
    messages_text,
    prompt_of,
    split_path,
    text_of,
)
from pipeline.corpora.scored_sources import Source, open_source
from pipeline.infra.errors import ConfigError, DataError

LAYOUTS = ("auto", "grouped", "flat", "pairs", "nested")
FIELD_KEYS = ("prompt_field", "response_field", "score_field", "responses_field",
              "scores_field", "chosen_field", "rejected_field", "score_chosen_field",
              "score_rejected_field")  # fmt: skip
PROMPTS = ("prompt", "instruction", "question")
PAIR_SCORES = (("score_chosen", "score_rejected"), ("chosen_rating", "rejected_rating"),
               ("chosen-rating", "rejected-rating"), ("chosen_score", "rejected_score"))  # fmt: skip
RESPONSES = ("text", "response", "completion", "answer", "output")
ITEM_RESPONSES = ("response", "answer", "text", "completion", "output", "content")
ITEM_SCORES = ("overall_score", "score", "rating", "reward", "rank")
FLAT_SCORES = ("reward", "score", "rating")


@dataclass
class Plan:
    layout: str
    fields: dict[str, str | None]  # the names read, in the order the line shows them
    score_name: str  # what score_transform=auto looks at


def read_data(
    path: str | None = None,
    hf_name: str | None = None,
    split: str = "train",
    revision: str | None = None,
    layout: str = "auto",
    fields: dict[str, str | None] | None = None,
    transform: str = "auto",
) -> ScoredData:
    """The scored groups of a source in ``layout``, every bad row a one-line DataError
    naming the source, its line/row and the field."""
    if layout not in LAYOUTS:
        raise ConfigError(f"data.layout={layout!r} must be one of {', '.join(LAYOUTS)}")
    given = {k: (fields or {}).get(k) for k in FIELD_KEYS}
    source = open_source(path, hf_name, split, revision)
    rows = source.rows()
    try:
        first = next(rows)
    except StopIteration:
        raise DataError(f"{source.label} has no rows") from None
    plan = _plan(layout, first[1], given, source.where(first[0]))
    name, fn = score_transform(transform, plan.score_name)
    shown = ", ".join(v if v else "implicit prompt" for v in plan.fields.values())
    arrow = f"auto -> {plan.layout}" if layout == "auto" else plan.layout
    line = f"[data] layout {arrow} ({shown}) in {source.label}"
    if name != "identity":
        line += f"; score_transform={name}: score = -{plan.score_name}"
    data = _read(plan, source, itertools.chain([first], rows), given, fn)
    data.layout, data.layout_line, data.transform = plan.layout, line, name
    return data


def _read(plan: Plan, source: Source, rows, given: dict, fn: Callable) -> ScoredData:
    f = plan.fields
    if plan.layout in ("grouped", "flat"):
        legacy = Source(source.label, source.unit, lambda: rows)
        names = (f.get("prompt") or given["prompt_field"] or "prompt",
                 f.get("response") or given["response_field"] or "text",
                 f.get("responses") or given["responses_field"] or "responses",
                 f.get("score") or given["score_field"] or "reward",
                 f.get("scores") or given["scores_field"] or "scores")  # fmt: skip
        return scored_files.read_legacy(legacy, *names, transform=fn)
    builder = GroupBuilder(source.where, source.unit, merge=True)
    read_row = _pair_row if plan.layout == "pairs" else _nested_row
    for n, row in rows:
        read_row(builder, row, n, source.where(n), f, fn)
    return ScoredData(groups=builder.groups(), path=source.label, unit=source.unit)


# ---- which layout, which fields ---------------------------------------------------------


def _plan(layout: str, row: dict, given: dict, where: str) -> Plan:
    explicit = layout != "auto"
    order = {"auto": ("pairs", "nested", "grouped", "flat"), "grouped": ("grouped", "flat"),
             "flat": ("flat", "grouped")}.get(layout, (layout,))  # fmt: skip
    reasons = []
    for name in order:
        plan, reason = _PLANNERS[name](row, given, where, explicit)
        if plan is not None:
            return plan
        reasons.append(reason)
    if layout in ("grouped", "flat"):  # one reader: it names what a row lacks, per row
        return Plan(layout, {"prompt": given["prompt_field"] or "prompt"}, "")
    if layout == "auto":
        raise DataError(
            f"{where}: cannot tell the layout from its fields ({', '.join(map(str, row))}); "
            "set data.layout and the data.*_field names (see conf/task/custom.yaml)"
        )
    raise DataError(f"{where}: not a {layout} row: {reasons[0]}")


def _first(row: dict, names) -> str | None:
    return next((n for n in names if has(row, n)), None)


def _pairs_plan(row: dict, g: dict, where: str, explicit: bool) -> tuple[Plan | None, str]:
    chosen, rejected = g["chosen_field"] or "chosen", g["rejected_field"] or "rejected"
    if not (has(row, chosen) and has(row, rejected)):
        return None, f"missing field {chosen!r} or {rejected!r}"
    sc, sr = g["score_chosen_field"], g["score_rejected_field"]
    if not (sc and sr):
        found = next(((a, b) for a, b in PAIR_SCORES if has(row, a) and has(row, b)), None)
        if found is None:
            raise DataError(
                f"{where}: pair rows need a score for each side, and none of "
                f"{', '.join('/'.join(p) for p in PAIR_SCORES)} is there; set "
                "data.score_chosen_field and data.score_rejected_field"
            )
        sc, sr = sc or found[0], sr or found[1]
    prompt = g["prompt_field"] or ("prompt" if has(row, "prompt") else None)
    fields = {"prompt": prompt, "chosen": chosen, "rejected": rejected,
              "score_chosen": sc, "score_rejected": sr}  # fmt: skip
    return Plan("pairs", fields, sc), ""


def _nested_plan(row: dict, g: dict, where: str, explicit: bool) -> tuple[Plan | None, str]:
    resp, scores = g["responses_field"], g["scores_field"]
    heads = [split_path(p)[0] for p in (resp, scores) if p and "[]" in p]
    if heads:  # one path given: the other is looked for in the same list's first object
        items = lookup(row, heads[0])
        item = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
        resp = resp or _item_path(heads[0], item, ITEM_RESPONSES)
        scores = scores or _item_path(heads[0], item, ITEM_SCORES)
    elif resp is None and scores is None:  # the first list of objects with both
        for key, value in row.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                r, s = (_item_path(key, value[0], c) for c in (ITEM_RESPONSES, ITEM_SCORES))
                if r and s:
                    resp, scores = r, s
                    break
    # Lists without [] are the grouped layout, unless nested is asked for.
    if not (resp and scores and (explicit or "[]" in resp + scores)):
        return None, ("no list of objects with a response and a score (set "
                      "data.responses_field and data.scores_field, e.g. "
                      "completions[].response and completions[].overall_score)")  # fmt: skip
    prompt = g["prompt_field"] or _first(row, PROMPTS)
    if prompt is None:
        raise DataError(f"{where}: no prompt field ({', '.join(PROMPTS)}); set data.prompt_field")
    return Plan("nested", {"prompt": prompt, "responses": resp, "scores": scores}, scores), ""


def _item_path(head: str, item: dict, names) -> str | None:
    found = _first(item, names)
    return f"{head}[].{found}" if found else None


def _grouped_plan(row: dict, g: dict, where: str, explicit: bool) -> tuple[Plan | None, str]:
    responses = g["responses_field"] or "responses"
    value = lookup(row, responses)
    if "[]" in responses or not isinstance(value, list) or value and isinstance(value[0], dict):
        return None, f"missing field {responses!r} (a list of strings)"
    fields = {"prompt": g["prompt_field"] or "prompt", "responses": responses,
              "scores": g["scores_field"] or "scores"}  # fmt: skip
    return Plan("grouped", fields, fields["scores"]), ""


def _flat_plan(row: dict, g: dict, where: str, explicit: bool) -> tuple[Plan | None, str]:
    response = g["response_field"] or _first(row, RESPONSES)
    if response is None:
        return None, f"missing field {g['response_field'] or 'text'!r}"
    prompt = g["prompt_field"] or _first(row, PROMPTS) or "prompt"
    score = g["score_field"] or _first(row, FLAT_SCORES)
    if score is None:
        numeric = [k for k, v in row.items() if k not in (prompt, response)
                   and isinstance(v, numbers.Real) and not isinstance(v, bool)]  # fmt: skip
        if len(numeric) > 1:
            raise ConfigError(
                f"{where} has several score attributes ({', '.join(numeric)}); "
                "choose one with data.score_field"
            )
        if not numeric:
            raise DataError(
                f"{where}: no score field (reward, score, rating); set data.score_field"
            )
        score = numeric[0]
    return Plan("flat", {"prompt": prompt, "response": response, "score": score}, score), ""


_PLANNERS = {"pairs": _pairs_plan, "nested": _nested_plan, "grouped": _grouped_plan,
             "flat": _flat_plan}  # fmt: skip


# ---- one row ------------------------------------------------------------------------------


def _pair_row(builder: GroupBuilder, row: dict, n: int, where: str, f: dict, fn) -> None:
    prompt, msgs, chosen, rejected = _pair_texts(row, where, f)
    if chosen == rejected:
        raise DataError(f"{where}: {f['chosen']!r} and {f['rejected']!r} are the same response")
    for side, text in (("chosen", chosen), ("rejected", rejected)):
        name = f[f"score_{side}"]
        score = fn(score_value(get(row, name, where), repr(name), where))
        builder.add(prompt, msgs, text, score, n, repr(f[side]))


def _pair_texts(row: dict, where: str, f: dict) -> tuple[str, list | None, str, str]:
    """(prompt text, prompt messages or None, chosen text, rejected text) of a pair row."""
    cname, rname = f["chosen"], f["rejected"]
    c, r = get(row, cname, where), get(row, rname, where)
    prompt, msgs = prompt_of(row, f["prompt"], where) if f["prompt"] else ("", None)
    if isinstance(c, list) != isinstance(r, list):
        raise DataError(f"{where}: {cname!r} and {rname!r} must both be strings or both "
                        "message lists")  # fmt: skip
    if not isinstance(c, list):
        if f["prompt"] is None:
            raise DataError(f"{where}: {cname!r} is a string, so the prompt needs its own "
                            "field (set data.prompt_field)")  # fmt: skip
        return prompt, msgs, text_of(c, cname, where), text_of(r, rname, where)
    before, chosen = last_assistant(c, cname, where)
    before_r, rejected = last_assistant(r, rname, where)
    if before != before_r:
        raise DataError(f"{where}: {cname!r} and {rname!r} differ before their last assistant "
                        "turn (a pair answers one conversation)")  # fmt: skip
    if f["prompt"] is None:  # TRL's implicit prompt: the conversation so far
        if not any(m["content"] for m in before):
            raise DataError(f"{where}: {cname!r} has no message before its last assistant "
                            "turn, so the prompt is empty (set data.prompt_field)")  # fmt: skip
        return messages_text(before), before, chosen, rejected
    # A text prompt with chat responses and no earlier turn: it is the user's turn.
    msgs = msgs + before if msgs is not None else before or [{"role": "user", "content": prompt}]
    return prompt, msgs, chosen, rejected


def _nested_row(builder: GroupBuilder, row: dict, n: int, where: str, f: dict, fn) -> None:
    prompt, msgs = prompt_of(row, f["prompt"], where)
    responses = list_values(row, f["responses"], where)
    scores = list_values(row, f["scores"], where)
    if len(responses) != len(scores):
        raise DataError(f"{where}: {len(responses)} {f['responses']!r} but {len(scores)} "
                        f"{f['scores']!r}")  # fmt: skip
    for i, (response, score) in enumerate(zip(responses, scores, strict=True)):
        rname, sname = (_item_name(p, i) for p in (f["responses"], f["scores"]))
        text = text_of(response, rname, where)
        builder.add(prompt, msgs, text, fn(score_value(score, repr(sname), where)), n, repr(rname))


def _item_name(path: str, i: int) -> str:
    head, tail = split_path(path)
    return f"{head}[{i}]" + (f".{tail}" if tail else "")
