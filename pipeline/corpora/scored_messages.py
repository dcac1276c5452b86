"""Field paths and chat messages in scored rows, each mistake a DataError naming the row.

A field name is a key of the row; a name that is not one but has dots is a path into
nested objects (``meta.prompt``); ``[]`` maps over a list of objects
(``completions[].response`` is each completion's response). A message list is a list of
``{"role": str, "content": str}`` (other keys are dropped)."""

from __future__ import annotations

from typing import Any

from pipeline.infra.errors import ConfigError, DataError

Messages = list[dict[str, str]]
_MISSING = object()


def lookup(row: dict, name: str) -> Any:
    """The value at ``name`` (a key, else a dotted path), or ``_MISSING``."""
    if name in row:
        return row[name]
    value: Any = row
    for part in name.split(".") if "." in name else [name]:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def has(row: dict, name: str) -> bool:
    return lookup(row, name) is not _MISSING


def get(row: dict, name: str, where: str, shown: str | None = None) -> Any:
    value = lookup(row, name)
    if value is _MISSING:
        raise DataError(f"{where}: missing field {shown or name!r}")
    return value


def split_path(path: str) -> tuple[str, str | None]:
    """(list part, item part) of ``a[].b``, or (path, None) without ``[]``."""
    if path.count("[]") > 1:
        raise ConfigError(f"field path {path!r}: only one [] (a list of objects) is supported")
    if "[]" not in path:
        return path, None
    head, tail = path.split("[]", 1)
    tail = tail.removeprefix(".")
    if not head or not tail:
        raise ConfigError(f"field path {path!r} must look like list[].field")
    return head, tail


def list_values(row: dict, path: str, where: str) -> list:
    """The list ``path`` names: a list value, or one value per object of ``list[]``."""
    head, tail = split_path(path)
    value = get(row, head, where)
    if not isinstance(value, list):
        raise DataError(f"{where}: {head!r} must be a list, got {type(value).__name__}")
    # An empty list adds nothing to its group and is almost surely a broken export.
    if not value:
        raise DataError(f"{where}: {head!r} is an empty list")
    if tail is None:
        return value
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise DataError(
                f"{where}: {head}[{i}] must be an object with {tail!r}, got {type(item).__name__}"
            )
        out.append(get(item, tail, where, f"{head}[{i}].{tail}"))
    return out


def messages(value: Any, name: str, where: str) -> Messages:
    """A validated chat message list (a list of {role, content} strings)."""
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: {name!r}[{i}] must be a message {{role, content}}")
        if not isinstance(m["role"], str) or not isinstance(m["content"], str):
            raise DataError(f"{where}: {name!r}[{i}] needs a string role and content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def last_assistant(value: Any, name: str, where: str) -> tuple[Messages, str]:
    """(the messages before the last assistant turn, that turn's content)."""
    msgs = messages(value, name, where)
    roles = [m["role"] for m in msgs]
    if "assistant" not in roles:
        raise DataError(f"{where}: {name!r} has no assistant message (role 'assistant')")
    k = len(roles) - 1 - roles[::-1].index("assistant")
    if k != len(msgs) - 1:
        raise DataError(
            f"{where}: {name!r} has {len(msgs) - 1 - k} message(s) after its last "
            "assistant turn (that turn is the response)"
        )
    return msgs[:k], msgs[k]["content"]


def messages_text(msgs: Messages) -> str:
    """A plain-text stand-in for a chat prompt: one message's content, or
    ``role: content`` blocks joined by blank lines."""
    if len(msgs) == 1:
        return msgs[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in msgs)


def prompt_of(row: dict, name: str, where: str) -> tuple[str, Messages | None]:
    """(text, messages or None) of a prompt field: a string, or a message list."""
    value = get(row, name, where)
    if isinstance(value, list):
        msgs = messages(value, name, where)
        text = messages_text(msgs) if msgs else ""
        if not any(m["content"] for m in msgs):
            raise DataError(f"{where}: {name!r} is empty")
        return text, msgs
    if not isinstance(value, str):
        raise DataError(f"{where}: {name!r} must be a string, got {type(value).__name__}")
    if value == "":
        raise DataError(f"{where}: {name!r} is empty")
    return value, None


def text_of(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: {name!r} must be a string, got {type(value).__name__}")
    return value
