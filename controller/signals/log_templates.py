"""Built-in KQL for the questions operators ask of Application Insights most often.

Written against the workspace-based schema (``AppRequests``, ``AppDependencies``,
``AppExceptions``), one value per ``grain`` bin, so the sustained-window rules apply
to logs as they do to metrics. The first line names the template: the query is
self-describing in Log Analytics' own query audit.
"""

from __future__ import annotations

from datetime import timedelta

from controller.policy.schema import LogTemplate

_SHAPES: dict[str, tuple[str, str]] = {
    # template: (table, summarize expression)
    "requestErrorRate": ("AppRequests", "100.0 * countif(Success == false) / count()"),
    "requestDurationP95": ("AppRequests", "percentile(DurationMs, 95)"),
    "requestDurationP99": ("AppRequests", "percentile(DurationMs, 99)"),
    "dependencyFailureRate": ("AppDependencies", "100.0 * countif(Success == false) / count()"),
    "exceptionCount": ("AppExceptions", "todouble(count())"),
}


def render(template: LogTemplate, role: str | None, grain: timedelta) -> str:
    """The KQL for ``template``, scoped to one role (AppRoleName) when given."""
    table, value = _SHAPES[template]
    minutes = max(1, int(grain.total_seconds() // 60))
    lines = [f"// remediator template: {template}", table]
    if role is not None:
        lines.append(f"| where AppRoleName == '{role}'")
    lines += [
        f"| summarize value = {value} by bin(TimeGenerated, {minutes}m)",
        "| order by TimeGenerated asc",
    ]
    return "\n".join(lines)
