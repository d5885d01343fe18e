"""`thawkit compare --models A,B`: the model is a dimension of the comparison, its table and report,
and the wrong-model-size check says when a smaller model is within one point of a larger one."""

from __future__ import annotations

import csv
import json

import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.compare import compare
from thawkit.compare.results import model_size_advice


@pytest.fixture(scope="module")
def two_models(tiny_models, tiny_decoders, toy_csv, tmp_path_factory):
    """A tiny BERT and a tiny Llama, each with frozen and LoRA, from the CLI."""
    out = tmp_path_factory.mktemp("cmp-models") / "cmp"
    main(["compare", "--data", str(toy_csv), "--models", f"{tiny_models['bert']},{tiny_decoders['llama']}",
          "--strategies", "frozen,lora", "--epochs", "3", "--max-length", "32", "--lr", "5e-3", "--no-advise",
          "--out", str(out)])
    return out


def test_every_model_and_strategy_is_a_row(two_models, tiny_models, tiny_decoders):
    results = json.loads((two_models / "results.json").read_text())
    names = {row["name"] for row in results["results"]}
    assert names == {"bert · frozen", "bert · lora", "llama · frozen", "llama · lora"}
    by_name = {row["name"]: row for row in results["results"]}
    # Each row's runs were trained on its own model, with the source saying why.
    for row in results["results"]:
        info = json.loads((two_models / row["runs"][0].split(str(two_models) + "/")[1] / "thawkit.json").read_text())
        expected = tiny_models["bert"] if row["model"] == "bert" else tiny_decoders["llama"]
        assert info["config"]["model"] == str(expected)
        assert info["plan"]["settings"]["model"]["source"].startswith("compare --models: job for model")
        assert info["strategy"] == row["strategy"]
    assert by_name["llama · lora"]["total_params"] != by_name["bert · lora"]["total_params"]
    assert all(row["size_on_disk_mb"] > 0 for row in results["results"])
    # A LoRA run is an adapter folder: far smaller on disk than the frozen run's full model.
    assert by_name["llama · lora"]["size_on_disk_mb"] < by_name["llama · frozen"]["size_on_disk_mb"]
    assert results["models"] == [str(tiny_models["bert"]), str(tiny_decoders["llama"])]
    assert results["winner"]["name"] in names


def test_results_table_and_report_name_the_model(two_models):
    with (two_models / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert {"name", "model", "total_params", "size_on_disk_mb"} <= set(table[0])
    assert sorted({row["model"] for row in table}) == ["bert", "llama"]
    page = (two_models / "report.html").read_text()
    assert "Which model and strategy for this data?" in page and "<th>parameters</th>" in page
    markdown = (two_models / "report.md").read_text()
    assert "| model · strategy |" in markdown and "Model size (" in markdown
    assert "±" not in markdown and "±" not in page and "(1 seed)" in markdown  # one seed: no spread shown as zero
    assert "**llama · lora**" in markdown  # the trainability section, per model and strategy
    results = json.loads((two_models / "results.json").read_text())
    advice = results["models_advice"]
    assert advice["rule"] == "wrong-model-size" and advice["reason"] in markdown
    learned = {row["model"] for row in results["results"] if not row["failed_runs"]}
    assert {m["model"] for m in advice["per_model"]} == learned  # tiny random models: one of them may collapse


def test_models_and_model_together_are_refused(tiny_models, toy_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--data", str(toy_csv), "--model", str(tiny_models["bert"]), "--models",
              f"{tiny_models['bert']},{tiny_models['roberta']}", "--out", str(tmp_path / "c")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model and --models" in err[0] and "fix:" in err[0]
    assert not (tmp_path / "c").exists()


def test_models_with_dapt_text_is_refused(tiny_models, toy_csv, tmp_path):
    with pytest.raises(thawkit.ConfigError, match="--dapt-text adapts one encoder"):
        compare(data=toy_csv, models=[str(tiny_models["bert"]), str(tiny_models["roberta"])], strategies=["frozen"],
                        dapt_text=toy_csv, epochs=1, out=tmp_path / "c", advise=False)
    assert not (tmp_path / "c").exists()


def test_successive_halving_across_models(tiny_models, toy_csv, tmp_path):
    result = compare(data=toy_csv, models=[str(tiny_models["bert"]), str(tiny_models["distilbert"])],
                             strategies=["frozen"], epochs=2, max_length=32, successive_halving=True,
                             out=tmp_path / "sh", advise=False)
    status = {row["name"]: row["eliminated_at_rung"] for row in result.rows}
    assert set(status) == {"bert · frozen", "distilbert · frozen"}
    assert sorted(status.values(), key=lambda v: v is None) == [0, None]  # one dropped after rung 0, one trained on
    assert (tmp_path / "sh" / "rung1").is_dir() and len(list((tmp_path / "sh" / "rung1").glob("*/thawkit.json"))) == 1


def _row(model: str, strategy: str, value: float, params: int) -> dict:
    return {"name": f"{model} · {strategy}", "model": model, "strategy": strategy, "seeds": 1, "failed_runs": 0,
            "validation_accuracy_mean": value, "total_params": params}


@pytest.mark.parametrize("small, large, verdict, pick", [
    (0.915, 0.92, "wrong model size", "minilm"),          # within one point: the smaller model suffices
    (0.89, 0.92, "the size pays", "smollm"),             # three points behind: the larger model earns its size
    (0.93, 0.92, "larger models do not pay", "minilm"),  # the smaller one is simply better
])
def test_model_size_advice(small, large, verdict, pick):
    rows = [_row("minilm", "lora", small, 22_700_000), _row("minilm", "frozen", small - 0.05, 22_700_000),
            _row("smollm", "lora", large, 134_500_000)]
    advice = model_size_advice(rows, "accuracy")
    assert advice["verdict"] == verdict and advice["model"] == pick
    if verdict == "wrong model size":
        assert "5.9x fewer parameters" in advice["reason"] and "minilm (22.7M parameters, 0.915 with lora)" in advice["reason"]


def test_model_size_advice_ignores_collapsed_and_single_model_rows():
    collapsed = {**_row("minilm", "lora", 0.92, 22_700_000), "failed_runs": 1}
    advice = model_size_advice([collapsed, _row("smollm", "lora", 0.80, 134_500_000)], "accuracy")
    assert advice["verdict"] == "only one model learned" and advice["model"] == "smollm"
    assert "every run of minilm failed" in advice["reason"]
    assert model_size_advice([_row("minilm", "lora", 0.9, 1), _row("minilm", "full", 0.91, 1)], "accuracy") is None


def test_a_job_a_guard_stops_is_a_failed_row_and_the_comparison_goes_on(tiny_models, toy_csv, tmp_path, monkeypatch, capsys):
    """One diverging strategy (a guard's GuardError) does not throw away the others' runs."""
    from thawkit.engine.core import pipeline
    from thawkit.guards.base import GuardError

    real = pipeline.run_training

    def diverging_full(plan, **kwargs):
        if plan.config.strategy == "full":
            raise GuardError("divergence: training diverged: the training loss rose from 0.7 to 9.1 over the first 15 steps")
        return real(plan, **kwargs)

    monkeypatch.setattr(pipeline, "run_training", diverging_full)
    result = compare(data=toy_csv, model=str(tiny_models["bert"]), strategies=["frozen", "full"], epochs=1, max_length=32,
                     out=tmp_path / "c", advise=False)
    rows = {row["strategy"]: row for row in result.rows}
    assert rows["full"]["failed_runs"] == 1 and rows["full"]["failed_reason"].startswith("divergence:")
    assert rows["full"]["validation_macro_f1_mean"] is None and rows["full"]["runs"] == []
    assert result.winner["strategy"] == "frozen"
    assert (tmp_path / "c" / "runs" / "full-seed42.failed-job.json").exists()
    assert "stopped: divergence" in (tmp_path / "c" / "report.md").read_text()
    assert "full     seed 42: failed: divergence" in capsys.readouterr().out

    with pytest.raises(GuardError, match="every job of the comparison failed"):
        compare(data=toy_csv, model=str(tiny_models["bert"]), strategies=["full"], epochs=1, max_length=32,
                out=tmp_path / "all-failed", advise=False)
