"""thawkit compare and report: consistent results, successive halving, the report in a real browser."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.compare import compare

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def comparison(tiny_models, tmp_path_factory):
    from thawkit.testing import write_toy_csv

    root = tmp_path_factory.mktemp("compare")
    data = write_toy_csv(root / "toy.csv", n=120)
    test = write_toy_csv(root / "toy-test.csv", n=40, seed=9)
    return compare(data=data, test=test, model=str(tiny_models["bert"]), epochs=2, max_length=32, seeds=2,
                   budget="10m", out=root / "cmp", advise=False)


def test_compare_writes_consistent_results(comparison):
    folder = comparison.path
    assert {p.name for p in folder.iterdir()} >= {"results.csv", "results.json", "report.html", "report.md", "runs"}
    rows = comparison.rows
    assert sorted(r["strategy"] for r in rows) == thawkit.available_strategies()
    payload = json.loads((folder / "results.json").read_text())
    assert payload["winner"]["strategy"] in {r["strategy"] for r in rows}
    assert payload["seeds"] == [42, 43] and payload["budget"] == "10m"
    with (folder / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [t["strategy"] for t in table] == [r["strategy"] for r in rows]
    infos = []
    for row in rows:
        assert row["seeds"] == 2 and len(row["runs"]) == 2
        assert row["validation_macro_f1_mean"] is not None and row["test_macro_f1_mean"] is not None
        for path in row["runs"]:
            run = thawkit.load(path)  # every run directory is complete and loadable
            infos.append(run.info)
    # Identical splits for every run; the seeds differ; the budget is shared.
    assert len({i["validation_source"] for i in infos}) == 1
    assert {i["config"]["seed"] for i in infos} == {42, 43}
    limits = [i["config"]["time_limit_seconds"] for i in infos]
    runs = 2 * len(thawkit.available_strategies())
    assert limits == pytest.approx([600 / runs] * runs)  # 10 minutes shared by every strategy x 2 seeds
    frozen = next(r for r in rows if r["strategy"] == "frozen")
    full = next(r for r in rows if r["strategy"] == "full")
    assert frozen["trainable_percent"] < 1 < full["trainable_percent"] == pytest.approx(100)
    assert frozen["forgetting_drift"] == pytest.approx(0.0, abs=1e-6)
    report = (folder / "report.md").read_text()
    assert "| strategy |" in report and "Measured winner" in report
    assert "Data: toy.csv (" in report and "2 seeds per strategy" in report  # what was compared, on what
    assert "Data: toy.csv (" in (folder / "report.html").read_text()


def test_successive_halving_stops_losers(tiny_models, toy_csv, tmp_path):
    result = compare(data=toy_csv, model=str(tiny_models["bert"]), strategies=["frozen", "partial", "gradual", "full"],
                     epochs=4, max_length=32, successive_halving=True, out=tmp_path / "sh", advise=False)
    rows = {r["strategy"]: r for r in result.rows}
    eliminated = [name for name, row in rows.items() if row["eliminated_at_rung"] is not None]
    survivors = [name for name, row in rows.items() if row["eliminated_at_rung"] is None]
    # 4 strategies: rung 0 (1 epoch) keeps 2, rung 1 (2 epochs) keeps 1, rung 2 trains it for 4 epochs.
    assert len(survivors) == 1 and len(eliminated) == 3
    assert sorted(rows[n]["eliminated_at_rung"] for n in eliminated) == [0, 0, 1]
    assert rows[survivors[0]]["rung_epochs"] == 4
    assert result.winner["strategy"] == survivors[0]
    rung_dirs = {p.name: sorted(q.name for q in p.iterdir()) for p in result.path.iterdir() if p.name.startswith("rung")}
    assert len(rung_dirs["rung0"]) == 4 and len(rung_dirs["rung1"]) == 2 and len(rung_dirs["rung2"]) == 1


def test_report_from_existing_runs(comparison, tmp_path, capsys):
    runs = [path for row in comparison.rows for path in row["runs"]][:4]
    main(["report", *runs, "--out", str(tmp_path / "rep")])
    assert (tmp_path / "rep" / "report.html").stat().st_size > 100_000  # plotly inline: works offline
    assert (tmp_path / "rep" / "report.md").exists()


def test_ray_missing_is_a_clear_error(tiny_models, toy_csv, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without the [ray] extra
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--data", str(toy_csv), "--model", str(tiny_models["bert"]), "--strategies", "frozen,full",
              "--ray", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "thawkit[ray]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_strategy_in_compare(toy_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--data", str(toy_csv), "--strategies", "frozen,bogus", "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2 and "'bogus'" in capsys.readouterr().err


def _chromium():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium/chromedriver missing: `make test` installs them (Debian chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1300,3200"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    return driver


def _open_report(driver, folder: Path) -> int:
    """Open report.html from disk (networking off) and wait until every chart is drawn; their count."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get((folder / "report.html").as_uri())
    expected = int(driver.execute_script("return document.body.dataset.charts"))
    count_drawn = "return document.querySelectorAll('.plotly-graph-div .main-svg').length > 0 && " \
                  "Array.from(document.querySelectorAll('.plotly-graph-div')).filter(d => d.querySelector('.main-svg')).length"
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(count_drawn) == expected)
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors
    return expected


@pytest.mark.browser
def test_report_renders_in_headless_chromium(comparison):
    """Chromium opens report.html from disk with networking off: every chart drawn, no JS errors."""
    driver = _chromium()
    try:
        assert _open_report(driver, comparison.path) == 6  # two learning curves, trainability, metric vs share, forgetting, reliability
        assert driver.execute_script("return document.querySelectorAll('table.results tbody tr').length") == len(thawkit.available_strategies())
        assert driver.execute_script("return document.querySelectorAll('table.trust').length") == 1  # calibration per run
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "report.png"))
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def small_comparisons(tiny_models, tmp_path_factory):
    """One seed and one epoch (what a first try gives), and three seeds, on too few validation
    examples to tell the strategies apart."""
    from thawkit.testing import write_toy_csv

    root = tmp_path_factory.mktemp("compare-small")
    data = write_toy_csv(root / "toy.csv", n=90, classes=3)
    common = dict(data=data, model=str(tiny_models["bert"]), max_length=16, advise=False, progress="off", measure_forgetting=False)
    return {"1 seed": compare(strategies=["frozen", "full", "lora"], epochs=1, seeds=1, out=root / "one", **common),
            "3 seeds": compare(strategies=["frozen", "full"], epochs=2, seeds=3, out=root / "three", **common)}


@pytest.mark.browser
@pytest.mark.parametrize("which", ["1 seed", "3 seeds"])
def test_small_reports_show_intervals_curves_and_the_uncertainty(small_comparisons, which):
    """No spread that was never measured (one seed: no ± at all; three seeds: their measured spread,
    0.000 for a strategy as deterministic as a frozen head's closed-form fit), a loss curve even for
    one epoch, each strategy's bootstrap interval, and the plain warning that the winner is not told apart."""
    comparison = small_comparisons[which]
    driver = _chromium()
    try:
        _open_report(driver, comparison.path)
        text = driver.execute_script("return document.body.innerText")
        assert ("±" in text) is (which == "3 seeds")
        assert "Uncertain:" in text and "95% bootstrap interval" in text
        cells = driver.execute_script("return Array.from(document.querySelectorAll('table.results tbody tr td:nth-child(2)'))"
                                      ".map(c => c.innerText)")
        assert len(cells) == len(comparison.rows) and all("[" in cell and "]" in cell for cell in cells), cells
        loss_points = driver.execute_script(
            "return Array.from(document.querySelectorAll('.plotly-graph-div')).flatMap(d => (d.data || []))"
            ".filter(t => (t.name || '').endsWith('training loss')).map(t => t.x.length)")
        assert len(loss_points) == len(comparison.rows) * (1 if which == "1 seed" else 3) and min(loss_points) > 1
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / f"report-{which.replace(' ', '-')}.png"))
    finally:
        driver.quit()


def test_parallel_workers(tiny_models, toy_csv, tmp_path):
    result = compare(data=toy_csv, model=str(tiny_models["bert"]), strategies=["frozen", "full"], epochs=1,
                     max_length=32, workers=2, out=tmp_path / "par", advise=False)
    assert sorted(r["strategy"] for r in result.rows) == ["frozen", "full"]
    for row in result.rows:
        assert thawkit.load(row["runs"][0]).predict("a great film")[0]["label"] in {"negative", "positive"}


def test_results_carry_every_metric_of_the_task(comparison):
    with (comparison.path / "results.csv").open() as handle:
        header = next(csv.reader(handle))
    for split in ("validation", "test"):
        for name in ("accuracy", "macro_f1", "weighted_f1", "loss"):
            assert f"{split}_{name}_mean" in header and f"{split}_{name}_std" in header
    assert "test accuracy" in (comparison.path / "report.md").read_text()


def test_compare_cli_takes_train_and_strategy_options(tiny_bert, toy_csv, tmp_path, capsys, monkeypatch):
    import rich.console

    from thawkit.cli import compare_cmds

    monkeypatch.setattr(compare_cmds, "console", rich.console.Console(width=80))  # an 80-column terminal
    main(["compare", "--data", str(toy_csv), "--model", str(tiny_bert), "--strategies", "frozen,lora", "--epochs", "1",
          "--max-length", "32", "--lr", "2e-3", "--class-weights", "balanced", "--lora-r", "4", "--no-advise",
          "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    infos = {json.loads(p.read_text())["strategy"]: json.loads(p.read_text()) for p in (tmp_path / "cmp").rglob("thawkit.json")}
    assert infos["lora"]["strategy_options"]["r"] == 4  # a strategy flag reaches that strategy's runs only
    assert all(i["config"]["lr"] == 2e-3 and i["class_weights"] is not None for i in infos.values())
    # Live progress: one line per evaluation of every job, named by strategy and seed.
    assert "frozen-seed42: epoch 1.00/1" in out and "lora-seed42: epoch 1.00/1" in out
    table = [line for line in out.splitlines() if "│" in line or "┃" in line]
    assert table and max(len(line) for line in table) <= 80
    assert all(cell.strip() for line in table[:1] for cell in line.strip("┃").split("┃"))  # every column labelled
    # Peak memory is per job (reset between runs in one process), not the process's running maximum.
    assert all(i["peak_memory_mb"] > 0 for i in infos.values())


def test_peak_memory_is_measured_per_run():
    """Each run of a comparison reports its own peak, not the process's running maximum."""
    import numpy as np

    from thawkit.engine.core.arguments import peak_memory_mb, reset_peak_memory

    reset_peak_memory()
    block = np.ones(400_000_000 // 8)  # 400 MB touched
    high = peak_memory_mb()
    del block
    reset_peak_memory()
    if peak_memory_mb() >= high:
        pytest.skip("this kernel cannot reset the peak resident set (no /proc/self/clear_refs)")
    assert peak_memory_mb() < high - 300


def test_the_loss_as_metric_picks_the_lowest():
    from thawkit.compare.results import aggregate, name_winner

    def summary(strategy: str, loss: float, seconds: float) -> dict:
        info = {"strategy": strategy, "trainable_params": 10, "total_params": 100, "train_seconds": seconds}
        return {"path": f"/runs/{strategy}", "info": info, "metrics": {"validation": {"loss": loss}}, "history": []}

    rows = aggregate([summary("full", 0.6, 1.0), summary("frozen", 0.3, 2.0)], "loss")
    assert [r["strategy"] for r in rows] == ["frozen", "full"]
    assert name_winner(rows, "loss")["strategy"] == "frozen"


@pytest.mark.parametrize("examples, uncertain", [(60, True), (20_000, False)])
def test_a_winner_inside_what_the_validation_set_resolves_is_called_uncertain(examples, uncertain):
    """0.80 vs 0.78 on 60 examples (one example = 1.7 points) cannot be told apart; on 20,000 it can."""
    from thawkit.compare.results import aggregate, name_winner

    def summary(strategy: str, accuracy: float) -> dict:
        info = {"strategy": strategy, "trainable_params": 10, "total_params": 100, "train_seconds": 1.0,
                "num_validation_examples": examples}
        return {"path": f"/runs/{strategy}", "info": info, "metrics": {"validation": {"accuracy": accuracy}}, "history": []}

    winner = name_winner(aggregate([summary("full", 0.80), summary("lora", 0.78)], "accuracy"), "accuracy")
    assert winner["strategy"] == "full" and winner["uncertain"] is uncertain
    assert ("Uncertain" in winner["reason"]) is uncertain
    if uncertain:
        assert f"{examples} validation examples" in winner["reason"] and winner["resolvable_margin"] == pytest.approx(0.143, abs=0.002)


def test_the_bootstrap_interval_is_resampling_the_validation_examples():
    """A multinomial draw over the confusion matrix's cells is resampling the examples themselves."""
    import numpy as np
    from sklearn.metrics import confusion_matrix, f1_score

    from thawkit.compare.results import bootstrap_interval

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 300)
    predicted = np.where(rng.random(300) < 0.8, gold, (gold + 1) % 3)
    matrix = {"format": "rows = gold, columns = predicted", "matrix": confusion_matrix(gold, predicted).tolist()}
    low, high = bootstrap_interval([{"confusion_matrix": matrix}], "macro_f1")
    draws = [rng.integers(0, 300, 300) for _ in range(2000)]
    scores = [f1_score(gold[i], predicted[i], average="macro") for i in draws]
    assert low == pytest.approx(np.percentile(scores, 2.5), abs=0.01) and high == pytest.approx(np.percentile(scores, 97.5), abs=0.01)
    assert low < f1_score(gold, predicted, average="macro") < high
    assert bootstrap_interval([{"confusion_matrix": matrix}], "loss") is None  # not a count metric
    assert bootstrap_interval([{}], "accuracy") is None  # no confusion matrix (NER, QA, ...): the binomial guide applies


@pytest.mark.parametrize("examples, uncertain", [(60, True), (6_000, False)])
def test_a_runner_up_inside_the_winners_bootstrap_interval_makes_it_uncertain(examples, uncertain):
    from thawkit.compare.report import markdown_report
    from thawkit.compare.results import aggregate, name_winner

    def summary(strategy: str, correct: float) -> dict:
        right = round(correct * examples / 2)
        matrix = [[right, examples // 2 - right], [examples // 2 - right, right]]
        info = {"strategy": strategy, "trainable_params": 10, "total_params": 100, "train_seconds": 1.0,
                "num_validation_examples": examples}
        validation = {"accuracy": 2 * right / examples, "confusion_matrix": {"format": "rows = gold, columns = predicted", "matrix": matrix}}
        return {"path": f"/runs/{strategy}", "info": info, "metrics": {"validation": validation}, "history": []}

    summaries = [summary("full", 0.80), summary("lora", 0.76)]
    rows = aggregate(summaries, "accuracy")
    winner = name_winner(rows, "accuracy")
    low, high = rows[0]["validation_accuracy_ci"]
    assert winner["strategy"] == "full" and low < 0.80 < high and winner["uncertain"] is uncertain
    assert ("inside full's 95% bootstrap interval" in winner["reason"]) is uncertain
    report = markdown_report(rows, winner, "accuracy", None, summaries)
    assert f"0.800 [{low:.3f}, {high:.3f}]" in report and "± 0.000" not in report


def test_a_strategy_the_task_refuses_stops_compare_before_any_job_trains(tiny_bert, tmp_path, monkeypatch):
    """Found measuring decoders on CoNLL: `--task ner --strategies ...,prompt` trained seven strategies
    for 20 minutes, then refused prompt tuning and discarded them all."""
    from test_matrix import TASK_ROWS

    from thawkit.errors import ConfigError

    def no_training(*args, **kwargs):
        raise AssertionError("a job trained before the refusal")

    monkeypatch.setattr("thawkit.compare.runner.train_job", no_training)
    files = TASK_ROWS["ner"][0](tmp_path)
    with pytest.raises(ConfigError, match="--strategy prompt is not available for --task ner"):
        compare(task="ner", data=files["data"], model=str(tiny_bert), strategies=["partial", "prompt"], epochs=1,
                max_length=32, out=tmp_path / "cmp", advise=False)
    assert not (tmp_path / "cmp").exists() and not list(tmp_path.glob(".cmp*"))


def test_compare_adds_the_prompting_baseline_scored_on_the_jobs_validation_examples(tiny_bert, tiny_decoders, tmp_path):
    from thawkit.data.classification import load_classification_data
    from thawkit.testing import write_toy_csv

    data = write_toy_csv(tmp_path / "toy.csv", n=80)
    test = write_toy_csv(tmp_path / "toy-test.csv", n=20, seed=9)
    result = compare(data=data, test=test, model=str(tiny_bert), strategies=["frozen"], epochs=1, max_length=32,
                     prompt_shots=2, prompt_model=str(tiny_decoders["llama"]), out=tmp_path / "cmp", advise=False)
    rows = {r["strategy"]: r for r in result.rows}
    prompting, frozen = rows["prompting"], rows["frozen"]
    assert prompting["name"] == "llama · prompting" and frozen["name"] == "frozen"
    assert prompting["trainable_percent"] == 0 and prompting["total_params"] > 0
    assert prompting["num_validation_examples"] == frozen["num_validation_examples"]
    assert prompting["validation_accuracy_mean"] is not None and prompting["test_accuracy_mean"] is not None
    folder = result.path / "runs" / "prompting"
    scored = pd.read_csv(folder / "predictions-validation.csv")["text"].tolist()
    held_out = load_classification_data(data, seed=json.loads((result.path / "results.json").read_text())["config"]["seed"]).validation
    assert scored == held_out["text"].tolist()  # the split every job holds out (seed 42), not the test file
    assert len(pd.read_csv(folder / "predictions-test.csv")) == 20
    assert json.loads((folder / "prompt.json").read_text())["shots_per_class"] == 2
    csv_rows = list(csv.DictReader((result.path / "results.csv").open()))
    assert "prompting" in {r["strategy"] for r in csv_rows}
    assert "prompting" in (result.path / "report.md").read_text()
