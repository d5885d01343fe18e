"""CLI options generated from the typed configs, so flags, ``--help``, YAML keys and docs never drift.

Every ``TrainConfig`` (or ``CompareConfig``) field becomes ``--field-name`` (booleans
``--field-name/--no-field-name``); every strategy option becomes the flag its field declares
(``json_schema_extra={"flag": ...}``, shared by strategies that take the same option). All
options default to None: given flags override the YAML file, which overrides the config defaults.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from thawkit.config import comma_list, flag_of
from thawkit.errors import ConfigError
from thawkit.strategies import available_strategies, get_strategy_class


CONFIG_FILE = inspect.Parameter(
    "config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
    default=typer.Option(None, "--config", help="YAML config (keys as in docs/config.md); flags override it", show_default=False),
)


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def cli_type(annotation: Any) -> tuple[type, str]:
    """The type typer parses, and a note for --help (choices, list syntax)."""
    inner = _unwrap_optional(annotation)
    origin = typing.get_origin(inner)
    if origin is Literal:
        return str, "one of: " + ", ".join(str(a) for a in typing.get_args(inner))
    if origin is list:
        return list[str], "comma-separated or repeated"
    if inner in (bool, int, float, Path):
        return inner, ""
    return str, ""


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    if default is None or default == [] or default == {}:
        return ""
    return f"default: {', '.join(map(str, default)) if isinstance(default, list) else default}"


def help_text(field: FieldInfo, note: str = "") -> str:
    parts = [field.description or "", note, default_text(field)]
    first, *rest = [p for p in parts if p]
    return first + (f" ({'; '.join(rest)})" if rest else "")


def field_declarations(name: str, field: FieldInfo) -> list[str]:
    """The flag and its aliases (``--x/--no-x`` for booleans)."""
    flags = [flag_of(name), *_extra(field).get("aliases", [])]
    if _unwrap_optional(field.annotation) is bool:
        return [f"{f}/--no-{f.removeprefix('--')}" for f in flags]
    return flags


def config_fields(model: type[BaseModel], skip: set[str] = frozenset()) -> dict[str, FieldInfo]:  # type: ignore[assignment]
    return {n: f for n, f in model.model_fields.items() if n not in skip and _extra(f).get("cli", True)}


def config_parameters(model: type[BaseModel], skip: set[str] = frozenset(), command: str | None = None) -> list[inspect.Parameter]:  # type: ignore[assignment]
    """One option per config field. With ``command``, the options the planner says it refuses stay
    accepted (so giving one gets the refusal's reason, not "no such option") but leave its --help."""
    from thawkit.planner.commands import COMMANDS

    refused = set(COMMANDS[command].refuses) | set(COMMANDS[command].inherited) if command is not None else set()
    params = []
    for name, field in config_fields(model, skip).items():
        kind, note = cli_type(field.annotation)
        option = typer.Option(None, *field_declarations(name, field), help=help_text(field, note), show_default=False,
                              hidden=name in refused, metavar="TEXT" if typing.get_origin(kind) is list else None)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]))
    return params


def strategy_flags() -> dict[str, list[tuple[str, str, FieldInfo]]]:
    """flag -> [(strategy, option name, field)]: e.g. --unfreeze-every -> gradual.every_steps, llrd.every_steps."""
    table: dict[str, list[tuple[str, str, FieldInfo]]] = {}
    for strategy in available_strategies():
        for option, field in get_strategy_class(strategy).Config.model_fields.items():
            flag = _extra(field).get("flag") or flag_of(option)
            table.setdefault(flag, []).append((strategy, option, field))
    return table


def shared_flag_help(takers: list[tuple[str, str, FieldInfo]]) -> tuple[type, str, str]:
    """(type, note, description) of a flag several strategies take: the choices of all of them, and
    each strategy's own description where they differ."""
    kind, note = cli_type(takers[0][2].annotation)
    choices: list[str] = []
    for _, _, field in takers:
        inner = _unwrap_optional(field.annotation)
        if typing.get_origin(inner) is Literal:
            choices += [str(a) for a in typing.get_args(inner) if str(a) not in choices]
    if choices:
        note = "one of: " + ", ".join(choices)
    owners: dict[str, list[str]] = {}  # description -> the strategies that say it
    for strategy, _, field in takers:
        owners.setdefault(field.description or "", []).append(strategy)
    description = next(iter(owners)) if len(owners) == 1 else "; ".join(
        f"{', '.join(names)}: {text}" for text, names in owners.items() if text)
    return kind, note, description


def _param_name(flag: str) -> str:
    return "strategy_flag_" + flag.removeprefix("--").replace("-", "_")


def strategy_parameters() -> list[inspect.Parameter]:
    params = []
    for flag, takers in strategy_flags().items():
        _, _, field = takers[0]
        kind, note, description = shared_flag_help(takers)
        who = "/".join(strategy for strategy, _, _ in takers)
        decls = [f"{flag}/--no-{flag.removeprefix('--')}"] if kind is bool else [flag]
        extra = [part for part in (note, default_text(field)) if part]
        text = description + (f" ({'; '.join(extra)})" if extra else "")
        option = typer.Option(None, *decls, help=f"{who}: {text}", show_default=False,
                              metavar="TEXT" if typing.get_origin(kind) is list else None)
        params.append(inspect.Parameter(_param_name(flag), inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]))
    return params


def _convert(value: Any, annotation: Any, flag: str) -> Any:
    if typing.get_origin(_unwrap_optional(annotation)) is list:
        if isinstance(value, str):
            return comma_list(value, flag)
        if isinstance(value, (list, tuple)):  # the flag repeated: each given value may itself be a comma list
            return [part for item in value for part in comma_list(str(item), flag)] if value else None
    return value


def list_option(values: list[str] | None, flag: str) -> list[str]:
    """A list option typer collected (repeated, each maybe comma-separated) as one list; [] when not given."""
    return _convert(list(values or []), list[str], flag) or []


def config_values(model: type[BaseModel], given: dict[str, Any]) -> dict[str, Any]:
    """The config fields the user passed on the command line (list fields split on commas)."""
    fields = model.model_fields
    converted = {name: _convert(value, fields[name].annotation, flag_of(name)) for name, value in given.items()
                 if name in fields and value is not None}
    return {name: value for name, value in converted.items() if value is not None}


def strategy_values(given: dict[str, Any], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """Per strategy, the options its flags set; a flag that none of ``strategies`` takes is an error."""
    chosen: dict[str, dict[str, Any]] = {}
    for flag, takers in strategy_flags().items():
        value = given.get(_param_name(flag))
        if value is None or (isinstance(value, (list, tuple)) and not value):  # a list flag not given: typer's empty list
            continue
        applicable = [(s, o, f) for s, o, f in takers if s in strategies]
        if not applicable:
            owners = "/".join(s for s, _, _ in takers)
            raise ConfigError(f"{flag} does not apply to strategy {', '.join(map(repr, strategies))}; fix: drop it or use --strategy {owners}")
        for strategy, option, field in applicable:
            chosen.setdefault(strategy, {})[option] = _convert(value, field.annotation, flag)
    return chosen


INPUT_FILES = ("data", "validation", "test", "dapt_text", "unlabeled", "file")


def command(body: Callable[..., None], leading: list[inspect.Parameter], *groups: list[inspect.Parameter]) -> Callable[..., None]:
    """A function typer can read: ``leading`` parameters (arguments), then generated options."""

    def wrapper(**kwargs: Any) -> None:
        from thawkit.paths import check_data_path

        for name in INPUT_FILES:  # before the body's heavy imports: a typo is one line at once
            if kwargs.get(name) is not None:
                check_data_path(Path(kwargs[name]))
        body(**kwargs)

    params = [*leading, *(p for group in groups for p in group)]
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    wrapper.__doc__ = body.__doc__
    wrapper.__name__ = body.__name__
    return wrapper


def options_markdown(model: type[BaseModel], title: str, skip: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """The options table of docs/config.md, from the same fields as the CLI."""
    lines = [f"## {title}", "", "| flag | YAML key | type | default | what it does |", "|---|---|---|---|---|"]
    for name, field in config_fields(model, skip).items():
        _, note = cli_type(field.annotation)
        kind = note or getattr(_unwrap_optional(field.annotation), "__name__", "str")
        default = default_text(field).removeprefix("default: ") or "–"
        lines.append(f"| `{' '.join(field_declarations(name, field))}` | `{name}` | {kind} | {default} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


def strategy_options_markdown() -> str:
    lines = ["## Strategy options", "", "In YAML they go under `strategy_options:` (`compare`: under `strategy_options: {name: {...}}`).", "",
             "| flag | strategy.option | type | default | what it does |", "|---|---|---|---|---|"]
    for flag, takers in strategy_flags().items():
        _, _, field = takers[0]
        _, note, description = shared_flag_help(takers)
        kind = note or getattr(_unwrap_optional(field.annotation), "__name__", "str")
        owners = ", ".join(f"{s}.{o}" for s, o, _ in takers)
        default = default_text(field).removeprefix("default: ") or "–"
        lines.append(f"| `{flag}` | {owners} | {kind} | {default} | {description} |")
    return "\n".join(lines) + "\n"


def config_reference() -> str:
    """docs/config.md: every option of train and compare, generated (tests/test_architecture_rules.py
    fails when the file is stale; regenerate with ``python -m thawkit.cli.options > docs/config.md``)."""
    from thawkit.config import CompareConfig, TrainConfig

    train_fields = set(TrainConfig.model_fields)
    return "\n".join([
        "# Configuration reference",
        "",
        "Generated from the typed configs (`thawkit.config`), the same source as the CLI flags, `--help`, error",
        "messages and the resolved config saved in every run's `thawkit.json`. A YAML file passed with",
        "`--config` uses the YAML keys; flags given on the command line override it.",
        "",
        options_markdown(TrainConfig, "`thawkit train` (and `thawkit.train(...)`)"),
        options_markdown(CompareConfig, "`thawkit compare`: every train option above, plus", skip=train_fields),
        strategy_options_markdown(),
    ])


if __name__ == "__main__":
    print(config_reference(), end="")
