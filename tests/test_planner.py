"""The planner: every setting resolved once, with its source; every command honours or refuses every
shared option; nothing outside the planner defaults a setting; compare --dapt-text adapts once."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.config import TrainConfig, flag_of
from thawkit.errors import ConfigError
from thawkit.planner import plan_run
from thawkit.planner.commands import COMMANDS, refuse_unhonoured
from thawkit.planner.resolve import RESOLVED, TASK_RESOLVED

SRC = Path(__file__).resolve().parents[1] / "src" / "thawkit"


def test_plan_records_where_every_resolved_value_came_from(tiny_bert, toy_csv):
    plan = thawkit.plan(data=toy_csv, model=str(tiny_bert), strategy="llrd", lr=2e-4)
    assert plan.config.lr == 2e-4 and plan.source("lr") == "argument"
    assert plan.config.head_lr_mult == 10 and plan.source("head_lr_mult").startswith("measured for classification/llrd/small")
    assert plan.config.max_length == 128 and plan.source("max_length") == "the task's default (classification)"
    assert plan.config.metric == "macro_f1" and plan.source("metric").startswith("the task's selection metric")
    assert plan.config.precision in ("bf16", "fp32") and plan.source("precision").startswith("auto: ")
    assert plan.config.split_seed == 42 and plan.config.out is not None and plan.config.tokenizer == str(tiny_bert)
    assert plan.source("batch_size") == "default"  # the field's own default, nothing resolved it
    record = plan.record()["settings"]
    assert "batch_size" not in record and record["lr"] == {"value": 2e-4, "source": "argument"}
    # Nothing left for later: every field a rule resolves is concrete in the plan.
    assert all(getattr(plan.config, name) is not None for name in RESOLVED)


def test_task_default_length_is_capped_at_the_models_positions(tiny_bert, tmp_path):
    from test_matrix import TASK_ROWS

    files = TASK_ROWS["qa"][0](tmp_path)
    files.pop("max_length")
    plan = thawkit.plan(task="qa", model=str(tiny_bert), strategy="full", **files)  # QA's 384 on a model of 130 positions
    assert plan.config.max_length == 130 and "the model's limit (max_position_embeddings 130" in plan.source("max_length")
    with pytest.raises(ConfigError, match="exceeds the model's 130 positions"):
        thawkit.plan(task="qa", model=str(tiny_bert), strategy="full", max_length=200, **files)


def test_measured_strategy_options_are_marked_as_measured(tiny_bert):
    from test_matrix import TASK_ROWS

    files = TASK_ROWS["ner"][0](Path(tiny_bert).parent)
    plan = thawkit.plan(task="ner", model=str(tiny_bert), strategy="frozen", **files)
    assert plan.config.strategy_options["feature_layer"] == -3
    assert plan.source("strategy_options.feature_layer").startswith("measured for ner/frozen/small")
    assert plan.build_strategy().measured_options == {"feature_layer": -3}
    given = thawkit.plan(task="ner", model=str(tiny_bert), strategy="frozen", strategy_options={"feature_layer": -1}, **files)
    assert given.config.strategy_options["feature_layer"] == -1 and given.build_strategy().measured_options == {}


def test_plan_round_trips_through_json(tiny_bert, toy_csv):
    plan = thawkit.plan(data=toy_csv, model=str(tiny_bert), strategy="gradual")
    again = thawkit.RunPlan.from_dict(json.loads(json.dumps(plan.as_dict())))
    assert again.config == plan.config and dict(again.sources) == dict(plan.sources)
    assert len(again.data().train) == len(plan.data().train)  # a worker reloads the data from the plan's config


def test_dry_run_prints_the_plan_with_sources_and_trains_nothing(tiny_bert, toy_csv, tmp_path, capsys):
    out = tmp_path / "run"
    for command in (["train", "--dry-run"], ["plan"]):
        main([*command, "--data", str(toy_csv), "--model", str(tiny_bert), "--strategy", "partial", "--lr", "1e-3",
              "--out", str(out)])
        shown = capsys.readouterr().out
        assert "command line (--lr)" in shown and "measured for classification/partial/small" not in shown.split("lr ")[0]
        assert "head_lr_mult" in shown and "the task's default" in shown
        assert not out.exists()


def test_config_file_values_say_so(tiny_bert, toy_csv, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {toy_csv}\nmodel: {tiny_bert}\nstrategy: full\nbatch_size: 8\n")
    main(["plan", "--config", str(config), "--batch-size", "4"])
    shown = capsys.readouterr().out
    assert f"config file {config}" in shown and "command line (--batch-size)" in shown


# One sample value per shared option, different from the field's default (for the table below).
SAMPLES = {
    "task": "classification", "validation": "VALIDATION", "test": "VALIDATION", "text_col": "text", "text_pair_col": None,
    "label_col": "label", "multi_label": False, "label_sep": ";", "delimiter": ",", "quotechar": '"', "val_fraction": 0.2,
    "model": "MODEL", "tokenizer": "MODEL", "strategy": "full", "epochs": 2.0, "lr": 1e-3, "head_lr_mult": 2.0, "batch_size": 4,
    "eval_batch_size": 8, "gradient_accumulation_steps": 2, "max_length": 32, "warmup_ratio": 0.2, "weight_decay": 0.1,
    "early_stopping_patience": 1, "metric": "accuracy", "cache": False, "cache_dtype": "float32", "cache_dir": "CACHE",
    "cache_ram_budget_mb": 100.0, "group_by_length": False, "precision": "fp32", "class_weights": "balanced", "strict": True,
    "measure_forgetting": False, "save_checkpoints": True, "checkpoint_every": "epoch", "keep_checkpoints": 2,
    "dapt_text": "VALIDATION", "distill_alpha": 0.3, "distill_temperature": 3.0, "distill_hidden_weight": 0.1, "resume": "RUN",
    "progress": "lines", "select_best": False, "seed": 7, "split_seed": 8, "time_limit_seconds": 60.0, "ray_workers": 2,
    "ray_address": "auto", "ray_cpus": 2.0, "ray_gpus": 1.0, "out": "OUT", "overwrite": True, "report_to": ["tensorboard"],
    # Generation's and similarity's own (refused for the classification planned here: tests/test_generation.py,
    # tests/bad_inputs/cases.yaml).
    "max_new_tokens": None, "generation_samples": None, "score_scale": None,
    "label_names": ["neg", "pos"], "calibrate": False, "long_text": "window", "window_overlap": 8, "window_pooling": "max",
    "logging_steps": 5,
    "slice_cols": None,  # needs a column of its own: tests/test_trust.py trains, evaluates and compares with it
}
NOT_PLANNED_TOGETHER = {"resume", "data", "strategy_options", "text_pair_col"}  # resume plans from a run; the rest fixed


def test_every_shared_option_has_a_sample():
    assert set(TrainConfig.model_fields) - {"data", "strategy_options"} == set(SAMPLES)


def _refused(command: str, name: str) -> bool:
    spec = COMMANDS[command]
    return name in spec.refuses or name in spec.inherited or (name in spec.sets and spec.sets[name][0] != SAMPLES[name])


@pytest.mark.parametrize("command", ["train", "compare", "distill", "lr-find", "update"])
def test_every_command_honours_or_refuses_every_shared_option(command, tiny_bert, toy_csv, tmp_path):
    concrete = {"VALIDATION": str(toy_csv), "MODEL": str(tiny_bert), "CACHE": str(tmp_path / "cache"), "OUT": str(tmp_path / "out"),
                "RUN": str(tmp_path / "out")}
    samples = {k: concrete.get(v, v) if isinstance(v, str) else v for k, v in SAMPLES.items() if v is not None}
    honoured = {}
    for name, value in samples.items():
        if _refused(command, name):
            with pytest.raises(ConfigError, match=flag_of(name)):
                refuse_unhonoured(COMMANDS[command], {name: value})
        else:
            refuse_unhonoured(COMMANDS[command], {name: value})  # accepted
            honoured[name] = value
    if command in ("train", "lr-find"):  # planned together: each accepted value reaches the plan the engine runs
        given = {k: v for k, v in honoured.items() if k not in NOT_PLANNED_TOGETHER}
        plan = plan_run({"data": str(toy_csv), **given}, command, dry_run=True)
        for name, value in given.items():
            planned = getattr(plan.config, name)
            expected = str(tmp_path / "out-dapt") if name == "model" and "dapt_text" in given else value
            assert str(planned) == str(expected) or planned == expected, name
            assert plan.source(name) in ("argument",) or name == "model", (name, plan.source(name))


def test_refused_options_are_one_line_exit_2_on_the_cli(tiny_bert, toy_csv, tmp_path, capsys):
    cases = [
        ["lr-find", "--data", str(toy_csv), "--model", str(tiny_bert), "--epochs", "2"],
        ["lr-find", "--data", str(toy_csv), "--model", str(tiny_bert), "--out", str(tmp_path / "x")],
        ["train", "--data", str(toy_csv), "--model", str(tiny_bert), "--distill-alpha", "0.2"],
        ["compare", "--data", str(toy_csv), "--model", str(tiny_bert), "--ray-workers", "2"],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, argv
        assert "does not take" in err or "does not" in err
    assert not (tmp_path / "x").exists()


def test_distill_refuses_model_and_dapt_text(tiny_bert, toy_csv, tmp_path):
    with pytest.raises(ConfigError, match="--dapt-text"):
        thawkit.distill(tmp_path / "teacher", data=toy_csv, dapt_text=toy_csv)
    with pytest.raises(ConfigError, match="--student"):
        thawkit.distill(tmp_path / "teacher", data=toy_csv, model=str(tiny_bert))


def _outside(folders: tuple[str, ...]) -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if not set(p.relative_to(SRC).parts[:1]) & set(folders)
            and p.name not in ("config.py", "runplan.py")]


def test_no_setting_is_defaulted_outside_the_planner():
    """The fields the planner resolves are never defaulted again: no ``cfg.lr or 1e-4``, no
    ``if cfg.max_length is None``, no config rewritten with ``model_copy(update=...)``."""
    problems = []
    for path in _outside(("planner",)):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and isinstance(node.values[0], ast.Attribute) \
                    and node.values[0].attr in RESOLVED + TASK_RESOLVED and isinstance(node.values[0].value, ast.Name) \
                    and node.values[0].value.id in ("cfg", "config", "self"):
                problems.append(f"{where} {node.values[0].value.id}.{node.values[0].attr} or ...")
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr in RESOLVED + TASK_RESOLVED \
                    and isinstance(node.left.value, ast.Name) and node.left.value.id in ("cfg", "config") \
                    and isinstance(node.ops[0], ast.Is) and any(isinstance(c, ast.Constant) and c.value is None for c in node.comparators):
                problems.append(f"{where} {node.left.value.id}.{node.left.attr} is None")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "model_copy" \
                    and any(k.arg == "update" for k in node.keywords):
                problems.append(f"{where} model_copy(update=...)")
    assert problems == []


def test_compare_dapt_text_adapts_once_and_every_job_fine_tunes_the_adapted_encoder(tiny_bert, toy_csv, tmp_path):
    from thawkit.compare import compare

    text = tmp_path / "domain.txt"
    text.write_text("\n".join(f"the kinase phosphorylates substrate {i} in the cytoplasm of the cell" for i in range(60)) + "\n")
    comparison = compare(data=toy_csv, model=str(tiny_bert), strategies=["frozen", "full"], epochs=1, max_length=16,
                         dapt_text=text, out=tmp_path / "cmp", progress="off", measure_forgetting=False, advise=False)
    adapted = tmp_path / "cmp-dapt"
    assert (adapted / "dapt.json").exists()
    for row in comparison.rows:
        info = json.loads((Path(row["runs"][0]) / "thawkit.json").read_text())
        assert info["base_model"] == str(adapted) and info["dapt"]["path"] == str(adapted)
        assert "compare --dapt-text" in info["plan"]["settings"]["model"]["source"]


@pytest.mark.parametrize("command", ["train", "compare", "distill", "lr-find", "update"])
def test_help_lists_only_the_options_a_command_honours(command):
    """Refused options leave --help (giving one still gets the refusal's reason, not 'no such option')."""
    from typer.main import get_command

    from thawkit.cli.app import app

    click_command = get_command(app).commands[command]
    shown = {opt for param in click_command.params if not getattr(param, "hidden", False) for opt in param.opts}
    hidden = {opt for param in click_command.params if getattr(param, "hidden", False) for opt in param.opts}
    refused = {flag_of(name) for name in (*COMMANDS[command].refuses, *COMMANDS[command].inherited)}
    assert refused <= hidden and not refused & shown, refused & shown
    assert "--data" in shown and (command == "update") != ("--model" in shown) and (command == "lr-find") != ("--epochs" in shown)


def test_no_help_text_shows_a_doubled_percent_sign():
    """click prints help verbatim: '6%%' in a help string shows as '6%%' ('dapt --help' did)."""
    from typer.main import get_command

    from thawkit.cli.app import app

    for name, click_command in get_command(app).commands.items():
        for param in click_command.params:
            assert "%%" not in (getattr(param, "help", None) or ""), (name, param.name)


@pytest.mark.parametrize("per_epoch, every", [(200, 20), (63, 7), (57, 19), (7, 1), (1, 1)])
def test_the_loss_is_logged_about_ten_times_an_epoch_ending_on_it(per_epoch, every):
    from thawkit.planner.resolve import logging_interval

    assert logging_interval(per_epoch) == every and per_epoch % every == 0


def test_each_evaluation_keeps_the_training_loss_points_since_the_last(tiny_bert, toy_csv, tmp_path):
    """A one-epoch run still has a loss curve; its evaluation's training loss is the mean of its points."""
    run = thawkit.train(data=toy_csv, model=str(tiny_bert), strategy="full", epochs=2, max_length=16, batch_size=2,
                        out=tmp_path / "run", progress="off", measure_forgetting=False)
    plan = run.info["plan"]["settings"]["logging_steps"]
    assert plan["value"] == 6 and "9 training-loss points an epoch (54 optimizer steps" in plan["source"]  # 108 rows / 2
    first, second = run.history
    assert [step for step, _ in first["train_loss_points"]] == list(range(6, 55, 6)) and first["step"] == 54
    assert [step for step, _ in second["train_loss_points"]] == list(range(60, 109, 6))
    assert first["train_loss"] == pytest.approx(sum(loss for _, loss in first["train_loss_points"]) / 9)
