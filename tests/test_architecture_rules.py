"""The architecture's rules, checked: small modules, no cross-module private names, no strategy-name
branches outside strategies/, every config field on the CLI, the generated docs current, layers kept."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import thawkit
from thawkit.cli.app import main

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "thawkit"
MODULES = sorted(SRC.rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_small(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400


def test_no_cross_module_private_names():
    problems = []
    for path in MODULES:
        modules: set[str] = set()  # local names bound to thawkit modules
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("thawkit"):
                problems += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
            if isinstance(node, ast.Import):
                modules |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("thawkit")}
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                problems.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert problems == []


def test_nothing_outside_strategies_branches_on_a_strategy_name():
    names = set(thawkit.available_strategies())

    def literal_names(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value} & names
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return {n for element in node.elts for n in literal_names(element)}
        return set()

    problems = []
    for path in MODULES:
        if "strategies" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Compare):
                found = set().union(*(literal_names(c) for c in [node.left, *node.comparators]))
                if found:
                    problems.append(f"{path.relative_to(SRC)}:{node.lineno} compares with {sorted(found)}")
            if isinstance(node, ast.Dict) and {n for k in node.keys if k is not None for n in literal_names(k)} >= {"full", "frozen"}:
                problems.append(f"{path.relative_to(SRC)}:{node.lineno} a table keyed by strategy names")
    assert problems == []


def _literal_branches(names: set[str], skip_folder: str) -> list[str]:
    """Comparisons against, and tables keyed by, any of ``names`` in modules outside ``skip_folder``."""

    def literal_names(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value} & names
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return {n for element in node.elts for n in literal_names(element)}
        return set()

    problems = []
    for path in MODULES:
        if skip_folder in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Compare):
                found = set().union(*(literal_names(c) for c in [node.left, *node.comparators]))
                if found:
                    problems.append(f"{path.relative_to(SRC)}:{node.lineno} compares with {sorted(found)}")
            if isinstance(node, ast.Dict) and len({n for k in node.keys if k is not None for n in literal_names(k)}) >= 2:
                problems.append(f"{path.relative_to(SRC)}:{node.lineno} a table keyed by names")
    return problems


def test_nothing_outside_tasks_branches_on_a_task_name():
    """Serving routes, card tags, advisor rules and export outputs come from the task's own roles."""
    from thawkit.tasks import get_task

    names = set(thawkit.available_tasks()) | {get_task(name).run_type for name in thawkit.available_tasks()}
    assert _literal_branches(names, "tasks") == []


def _options(command: str) -> set[str]:
    from thawkit.cli.app import app
    from typer.main import get_command

    group = get_command(app)
    return {opt for param in group.commands[command].params for opt in [*param.opts, *param.secondary_opts]}


@pytest.mark.parametrize("command, model", [("train", "TrainConfig"), ("compare", "CompareConfig")])
def test_every_config_field_is_a_flag(command, model):
    import thawkit.config as config
    from thawkit.cli.options import config_fields, strategy_flags

    flags = _options(command)
    for name in config_fields(getattr(config, model)):
        assert config.flag_of(name) in flags, name
    # Fields that are not flags themselves are reachable through other flags.
    assert set(getattr(config, model).model_fields) - set(config_fields(getattr(config, model))) <= {"strategy_options", "strategy"}
    for flag in strategy_flags():
        assert flag in flags  # every option of every strategy


def test_docs_config_reference_is_current():
    from thawkit.cli.options import config_reference

    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8") == config_reference(), \
        "docs/config.md is stale; fix: python -m thawkit.cli.options > docs/config.md"


def test_import_layers_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_usage_errors_are_one_line_exit_2(capsys):
    for argv in (["train", "--learning-rate", "1"], ["train", "--batch-size", "abc"], ["nonsense"], ["predict"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
        assert "Traceback" not in capsys.readouterr().err
