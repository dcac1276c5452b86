"""The ``data`` section's part of ``report.md``: reading published pair rows and building
their pairs (seconds, rows per second, peak memory, against the targets). Every figure
comes from the section's dict; nothing here is a measurement."""

from __future__ import annotations

from scripts.bench.markdown import _f, _table


def render_data(s: dict, report: dict) -> list[str]:
    if "error" in s:
        return [s["setup"], "", f"Failed: {s['error']}", ""]
    t = s["targets"]
    peak_gb = s["peak_rss_mb"] / 1024 if s.get("peak_rss_mb") is not None else None
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    memory = "not measured (`--inline`)" if peak_gb is None else met(peak_gb <= t["peak_gb"])
    imports = s["baseline_rss_mb"] / 1024 if s.get("baseline_rss_mb") is not None else None
    return [
        s["setup"],
        "",
        f"`{s['layout_line']}`",
        "",
        *_table(
            ["figure", "value", "target"],
            [
                ["rows", f"{s['rows']:,}", ""],
                ["file (MB)", _f(s["file_mb"], 1), ""],
                ["prompts (groups)", f"{s['groups']:,}", ""],
                ["training pairs built", f"{s['train_pairs']:,}", ""],
                ["seconds to read", _f(s["read_seconds"], 2), ""],
                [
                    "seconds to read and build the pairs",
                    _f(s["seconds"], 2),
                    f"≤ {t['seconds']:g} s: {met(s['seconds'] <= t['seconds'])}",
                ],
                ["rows per second", f"{s['rows_per_s']:,.0f}", ""],
                [
                    "peak memory (GB)",
                    _f(peak_gb, 2),
                    f"≤ {t['peak_gb']:g} GB: {memory}",
                ],
                ["of which the imports alone (GB)", _f(imports, 2), ""],
            ],  # fmt: skip
        ),
        "",
    ]
