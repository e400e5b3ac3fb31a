"""Policy validation: every problem reported as FILE:LINE, and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.policy.loader import PolicyError, load_policies

GOOD = """\
apiVersion: remediator/v1
kind: Policy
metadata:
  name: api-cpu
target:
  type: containerApp
  resourceId: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/api
objectives:
  - name: cpu
    signal:
      metric: CpuPercentage
      aggregation: Average
    comparison: "<"
    threshold: 70
    for: 5m
remediation:
  - scaleOut:
      step: 1
      maxReplicas: 4
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(*paths: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policies(paths)
    return [str(p) for p in info.value.problems]


def test_a_good_policy_loads(tmp_path: Path) -> None:
    """The reference policy validates and keeps its values."""
    [loaded] = load_policies([write(tmp_path, "ok.yaml", GOOD)])
    assert loaded.policy.objectives[0].for_.total_seconds() == 300
    assert loaded.policy.remediation[0].action == "scaleOut"


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("    for: 5m", "    for: 5 minutes", 15, "objectives.0.for: expected a duration"),
        (
            "    threshold: 70",
            "    threshold: 70\n    colour: red",
            15,
            "objectives.0.colour: unknown key",
        ),
        ("      maxReplicas: 4", "      maxReplicas: 4000", 19, "less than or equal to 1000"),
        ("      step: 1", "      step: 0", 18, "greater than or equal to 1"),
        ("  name: api-cpu", "  name: API CPU!", 4, "metadata.name"),
        ('    comparison: "<"', '    comparison: "~"', 13, "objectives.0.comparison"),
        ("  type: containerApp", "  type: virtualMachine", 6, "target.type"),
        (
            "  resourceId: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/api",
            "  resourceId: /subscriptions/0000/resourceGroups/*/providers/Microsoft.App/containerApps/api",
            7,
            "wildcards are not allowed",
        ),
        ("  - scaleOut:", "  - scaleDown:", 17, "remediation.0.scaleDown: unknown key"),
        (
            "      metric: CpuPercentage",
            "      metric: CpuPercentage\n      grain: 7m",
            12,
            "Azure Monitor serves grains of 1m, 5m",
        ),
    ],
)
def test_each_kind_of_bad_input_names_its_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    """Unknown keys, bad durations and out-of-range values point at the offending line."""
    assert old in GOOD
    path = write(tmp_path, "bad.yaml", GOOD.replace(old, new, 1))
    [problem] = problems(path)
    assert problem.startswith(f"{path}:{line}: "), problem
    assert message in problem


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported at the line the parser stopped."""
    path = write(tmp_path, "broken.yaml", GOOD.replace("  name: api-cpu", "  name: [api-cpu", 1))
    [problem] = problems(path)
    assert problem.startswith(f"{path}:5: YAML syntax error")


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    """YAML would silently keep the last of two equal keys; validation says so instead."""
    path = write(
        tmp_path,
        "dup.yaml",
        GOOD.replace("    threshold: 70", "    threshold: 70\n    threshold: 80"),
    )
    assert any(p.startswith(f"{path}:15: duplicate key 'threshold'") for p in problems(path))


def test_cross_field_rules_point_at_the_key_they_are_about(tmp_path: Path) -> None:
    """A clearing line on the wrong side, or a step over its bound, names that key's line."""
    wrong_clear = GOOD.replace("    threshold: 70", "    threshold: 70\n    clear: 80")
    over_bound = GOOD + "guards:\n  bounds:\n    maxReplicas: 3\n"
    p1 = write(tmp_path, "clear.yaml", wrong_clear)
    p2 = write(tmp_path, "bound.yaml", over_bound)
    assert problems(p1, p2) == [
        f"{p1}:15: objectives.0.clear: (80) must be at or below the threshold (70) "
        "when the objective is '<'",
        f"{p2}:19: remediation.0.scaleOut.maxReplicas: 4 exceeds guards.bounds.maxReplicas (3)",
    ]


def test_an_empty_step_is_an_empty_mapping(tmp_path: Path) -> None:
    """`- restartRevision:` with nothing after it is the same as `{}`."""
    text = GOOD.replace(
        "  - scaleOut:\n      step: 1\n      maxReplicas: 4\n", "  - restartRevision:\n"
    )
    [loaded] = load_policies([write(tmp_path, "restart.yaml", text)])
    assert loaded.policy.remediation[0].action == "restartRevision"


def test_all_files_are_checked_and_nothing_is_returned_if_any_is_bad(tmp_path: Path) -> None:
    """One bad file among good ones fails the whole set, listing every problem."""
    good = write(tmp_path, "a.yaml", GOOD)
    bad1 = write(tmp_path, "b.yaml", GOOD.replace("for: 5m", "for: soon"))
    bad2 = write(tmp_path, "c.yaml", "kind: [\n")
    found = problems(good, bad1, bad2)
    assert {p.split(":")[0] for p in found} == {str(bad1), str(bad2)}


def test_policy_names_are_unique_across_files(tmp_path: Path) -> None:
    """Two files declaring the same policy name are refused, naming both places."""
    first = write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", GOOD)
    [problem] = problems(first, second)
    assert problem.startswith(f"{second}:1: ") and f"{first}:1" in problem


def test_validate_command_exits_2_with_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`remediator validate` on a syntax error, an unknown key and a bad duration."""
    syntax = write(tmp_path, "1.yaml", "apiVersion: remediator/v1\nkind: [\n")
    unknown = write(tmp_path, "2.yaml", GOOD.replace("kind: Policy", "kind: Policy\nowner: me"))
    duration = write(tmp_path, "3.yaml", GOOD.replace("for: 5m", "for: 5x"))
    code = main(["validate", str(syntax), str(unknown), str(duration)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines == [
        f"{syntax}:3: YAML syntax error: expected the node content, but found '<stream end>'",
        f"{unknown}:3: owner: unknown key",
        f"{duration}:15: objectives.0.for: expected a duration such as 30s, 5m or 1h, got '5x'",
    ]


def test_validate_command_accepts_the_shipped_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """The policies in policies/ are valid."""
    folder = Path(__file__).parents[2] / "policies"
    assert main(["validate", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_one_target_has_one_policy(tmp_path: Path) -> None:
    """Two policies on one app would double its cooldown and budget: refused, naming both."""
    first = write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", GOOD.replace("name: api-cpu", "name: api-memory"))
    [problem] = problems(first, second)
    assert problem.startswith(f"{second}:1: target ")
    assert f"already belongs to policy 'api-cpu' ({first}:1)" in problem


def test_the_readme_policy_example_is_valid(tmp_path: Path) -> None:
    """The policy shown in the README validates as written (with a subscription filled in)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("## A policy", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = write(tmp_path, "readme.yaml", example.replace("<sub>", "0000"))
    [loaded] = load_policies([path])
    assert [s.action for s in loaded.policy.remediation] == [
        "scaleOut",
        "scaleUp",
        "restartRevision",
    ]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        (
            "    threshold: 70",
            "    threshhold: 70\n    threshold: 70",
            14,
            "objectives.0.threshhold: unknown key (did you mean 'threshold'?)",
        ),
        (
            "      aggregation: Average",
            "      agregation: Average",
            12,
            "objectives.0.signal.agregation: unknown key (did you mean 'aggregation'?)",
        ),
        (
            "      maxReplicas: 4",
            "      maxReplicas: 4\n      maxReplica: 4",
            20,
            "remediation.0.scaleOut.maxReplica: unknown key (did you mean 'maxReplicas'?)",
        ),
        ("    threshold: 70", "    threshold: 70\n    colour: red", 15, "colour: unknown key"),
    ],
)
def test_a_misspelt_key_gets_the_closest_allowed_one(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    """The suggestion comes from the keys allowed at that place; none when nothing is close."""
    path = write(tmp_path, "p.yaml", GOOD.replace(old, new))
    found = [p for p in problems(path) if "unknown key" in p]
    assert found == [f"{path}:{line}: {message}" if "." in message else found[0]]
    assert message in found[0] and (("did you mean" in message) == ("did you mean" in found[0]))


def test_a_missing_file_says_no_such_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path / "nowhere.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nowhere.yaml'}: no such file"


def test_policies_from_one_template_share_their_equal_parts(tmp_path: Path) -> None:
    """A fleet's policies differ by name and target: their objectives, ladder and guards
    are held once, and each policy still equals itself loaded alone."""
    docs = [
        GOOD.replace("api-cpu", f"api-{i}").replace("containerApps/api", f"containerApps/a{i}")
        for i in range(3)
    ]
    docs[2] = docs[2].replace("threshold: 70", "threshold: 80")
    first, second, third = load_policies([write(tmp_path, "fleet.yaml", "---\n".join(docs))])
    assert first.policy.objectives is second.policy.objectives
    assert first.policy.guards is second.policy.guards is third.policy.guards
    assert first.policy.remediation is third.policy.remediation
    assert third.policy.objectives is not first.policy.objectives  # 80, not 70
    assert third.policy.objectives[0].threshold == 80
    assert first.policy.target is not second.policy.target
    [alone] = load_policies([write(tmp_path, "alone.yaml", docs[1])])
    assert alone.policy == second.policy and alone.line == 1
    assert second.policy.model_fields_set == alone.policy.model_fields_set
