"""Resume after a kill: the resumed run ends with the same weights and metrics as an uninterrupted
one (CPU, same seed), for full fine-tuning, gradual unfreezing mid-schedule and LoRA."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import thawkit
from thawkit.engine.core.resume import STATE_FILE, complete_checkpoints
from thawkit.engine.core.trainer import StrategyTrainer
from thawkit.errors import ThawkitError


class Killed(BaseException):
    """Stands in for SIGKILL in-process: nothing after it runs (the subprocess test sends the real signal)."""


STRATEGIES = {"full": {}, "gradual": {}, "lora": {}}


def _train(tiny_bert, data, out, strategy, **extra):
    return thawkit.train(model=str(tiny_bert), data=data, strategy=strategy, epochs=3, lr=1e-3, batch_size=16, max_length=16,
                         out=out, progress="off", measure_forgetting=False, checkpoint_every="3", keep_checkpoints=2,
                         early_stopping_patience=0, seed=7, **extra)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (run_dir / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(run_dir / name))


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=1e-5, msg=name)
    ma, mb = (json.loads((p / "metrics.json").read_text())["validation"] for p in (a, b))
    for key in ("accuracy", "macro_f1", "loss"):
        assert ma[key] == pytest.approx(mb[key], abs=1e-6), key
    ha, hb = ([json.loads(line) for line in (p / "history.jsonl").read_text().splitlines()] for p in (a, b))
    # The whole learning curve, the interrupted epoch's training loss included (only the clock differs).
    assert [{k: v for k, v in h.items() if k != "elapsed_seconds"} for h in ha] == \
        [{k: v for k, v in h.items() if k != "elapsed_seconds"} for h in hb]
    ia, ib = (json.loads((p / "thawkit.json").read_text()) for p in (a, b))
    assert ia["stages"] == ib["stages"]
    assert ib["train_loss"] == pytest.approx(ia["train_loss"], rel=1e-6)  # over every step, not only the resumed ones


@pytest.fixture(scope="module")
def reference(tiny_bert, toy_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    return {s: (_train(tiny_bert, toy_csv, root / s, s) and root / s) for s in (*STRATEGIES, "partial")}


def _kill_after_checkpoint(monkeypatch, at_step: int) -> None:
    original = StrategyTrainer._save_checkpoint

    def save_then_die(self, model, trial):
        original(self, model, trial)
        if self.state.global_step >= at_step:
            raise Killed()

    monkeypatch.setattr(StrategyTrainer, "_save_checkpoint", save_then_die)


def _kill_during_step(monkeypatch, at_step: int) -> None:
    original = StrategyTrainer.training_step

    def step_then_die(self, *args, **kwargs):
        if self.state.global_step == at_step:
            raise Killed()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StrategyTrainer, "training_step", step_then_die)


def _kill_during_evaluation(monkeypatch, at_call: int) -> None:
    original = StrategyTrainer.evaluate
    calls = {"n": 0}

    def evaluate_then_die(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise Killed()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StrategyTrainer, "evaluate", evaluate_then_die)


def _kill_during_write(monkeypatch) -> None:
    import thawkit.engine.core.artifacts as artifacts

    original = artifacts.write_json

    def write_then_die(path, payload):
        original(path, payload)
        if path.name == "thawkit.json":
            raise Killed()

    monkeypatch.setattr(artifacts, "write_json", write_then_die)


KILLS = {
    "right after a checkpoint": lambda mp: _kill_after_checkpoint(mp, 9),
    "mid-epoch in the first epoch": lambda mp: _kill_during_step(mp, 5),
    "during evaluation": lambda mp: _kill_during_evaluation(mp, 2),
    "during the final write": _kill_during_write,
}


@pytest.mark.parametrize("kill", list(KILLS))
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_resume_equals_uninterrupted(strategy, kill, reference, tiny_bert, toy_csv, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        KILLS[kill](patch)
        with pytest.raises(Killed):
            _train(tiny_bert, toy_csv, out, strategy)
    partial = tmp_path / ".run.partial"
    assert not out.exists() and complete_checkpoints(partial / "checkpoints")
    # Re-running without --resume must not throw the checkpoints away.
    with pytest.raises(ThawkitError, match="--resume"):
        _train(tiny_bert, toy_csv, out, strategy)
    run = thawkit.train(resume=out, progress="off")
    assert run.info["strategy"] == strategy and not partial.exists()
    assert not (out / "checkpoints").exists() and not (out / "train_config.json").exists()
    _assert_same_run(reference[strategy], out)


def test_gradual_resumes_mid_schedule(reference, tiny_bert, toy_csv, tmp_path, monkeypatch):
    """Killed after the encoder began to thaw: the checkpoint records the stage, and the resumed
    optimizer has the groups of that stage (else loading its state would fail)."""
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_after_checkpoint(patch, 15)
        with pytest.raises(Killed):
            _train(tiny_bert, toy_csv, out, "gradual")
    checkpoint = complete_checkpoints(tmp_path / ".run.partial" / "checkpoints")[-1]
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert state["stage"] >= 1
    thawkit.train(resume=out, progress="off")
    _assert_same_run(reference["gradual"], out)


def test_resume_refuses_other_settings_and_finished_runs(reference, tiny_bert, toy_csv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_after_checkpoint(patch, 3)
        with pytest.raises(Killed):
            _train(tiny_bert, toy_csv, out, "full")
    from thawkit.cli.app import main

    main(["info", str(out)])  # info tells an interrupted run from a complete one
    shown = " ".join(capsys.readouterr().out.split())
    assert "interrupted, not complete" in shown and "step 3" in shown and "--resume" in shown
    with pytest.raises(ThawkitError, match="--resume continues the run as it was started"):
        thawkit.train(resume=out, lr=1e-4)
    with pytest.raises(ThawkitError, match="nothing to resume"):
        thawkit.train(resume=reference["full"])
    with pytest.raises(ThawkitError, match="no checkpoint to resume from"):
        thawkit.train(resume=tmp_path / "never-ran")


def test_incomplete_checkpoint_is_never_resumed_from(reference, tiny_bert, toy_csv, tmp_path, monkeypatch):
    """A kill while the Trainer writes a checkpoint leaves it without thawkit_state.json: the
    previous complete one is used, and rotation never deleted it first."""
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_after_checkpoint(patch, 6)
        with pytest.raises(Killed):
            _train(tiny_bert, toy_csv, out, "full")
    checkpoints = tmp_path / ".run.partial" / "checkpoints"
    newest = complete_checkpoints(checkpoints)[-1]
    (newest / STATE_FILE).unlink()  # as if killed before the state was written
    assert complete_checkpoints(checkpoints)[-1].name == "checkpoint-3"
    run = thawkit.train(resume=out, progress="off")
    assert run.info["global_steps"] == json.loads((reference["full"] / "thawkit.json").read_text())["global_steps"]
    _assert_same_run(reference["full"], out)


def _cli_signalled_after_checkpoint(tiny_bert, toy_csv, out: Path, signal_name: str) -> subprocess.CompletedProcess:
    """`thawkit train` in a subprocess that sends itself ``signal_name`` right after its second checkpoint."""
    script = (
        "import os, signal, sys\n"
        "from thawkit.engine.core.trainer import StrategyTrainer\n"
        "original = StrategyTrainer._save_checkpoint\n"
        "def save(self, model, trial):\n"
        "    original(self, model, trial)\n"
        "    if self.state.global_step >= 6:\n"
        f"        os.kill(os.getpid(), signal.{signal_name})\n"
        "StrategyTrainer._save_checkpoint = save\n"
        "from thawkit.cli.app import main\n"
        "main(sys.argv[1:])\n"
    )
    args = ["train", "--model", str(tiny_bert), "--data", str(toy_csv), "--strategy", "full", "--epochs", "3", "--lr", "1e-3",
            "--batch-size", "16", "--max-length", "16", "--out", str(out), "--progress", "off", "--no-measure-forgetting",
            "--checkpoint-every", "3", "--keep-checkpoints", "2", "--early-stopping-patience", "0", "--seed", "7"]
    return subprocess.run([sys.executable, "-c", script, *args], env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=300)


# Where `thawkit train` SIGKILLs itself (a hook in a subprocess; the signal is the real one).
KILL_POINTS = {
    # half a cache entry on disk, as a kill inside the write leaves it
    "during the cache pass": (
        "from thawkit.engine.cache.store import FeatureStore\n"
        "import numpy as np\n"
        "def save(self, key, states, info):\n"
        "    partial = self.root / f'.{key}.{os.getpid()}.partial'\n"
        "    partial.mkdir(parents=True, exist_ok=True)\n"
        "    np.save(partial / 'states.npy', states.data[: len(states.data) // 2])\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "FeatureStore.save = save\n"),
    "mid-epoch": (
        "from thawkit.engine.core.trainer import StrategyTrainer\n"
        "original = StrategyTrainer.training_step\n"
        "def step(self, *args, **kwargs):\n"
        "    if self.state.global_step == 10:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return original(self, *args, **kwargs)\n"
        "StrategyTrainer.training_step = step\n"),
    "during the final save": (
        "import thawkit.engine.core.artifacts as artifacts\n"
        "original = artifacts.write_json\n"
        "def write(path, payload):\n"
        "    original(path, payload)\n"
        "    if path.name == 'thawkit.json':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "artifacts.write_json = write\n"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
@pytest.mark.parametrize("strategy", ["partial", "gradual"])
def test_kill_9_then_resume_gives_the_uninterrupted_run(reference, tiny_bert, toy_csv, tmp_path, strategy, point):
    """The cached strategies, killed with SIGKILL in the cache pass, mid-epoch or while the run is
    saved, then `thawkit train --resume OUT`: the same weights, history and metrics as never killed."""
    out, cache = tmp_path / "run", tmp_path / "cache"  # a cold feature cache: the cache pass really runs
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "THAWKIT_CACHE_DIR": str(cache)}
    script = "import os, signal, sys\n" + KILL_POINTS[point] + "from thawkit.cli.app import main\nmain(sys.argv[1:])\n"
    args = ["train", "--model", str(tiny_bert), "--data", str(toy_csv), "--strategy", strategy, "--epochs", "3", "--lr", "1e-3",
            "--batch-size", "16", "--max-length", "16", "--out", str(out), "--progress", "off", "--no-measure-forgetting",
            "--checkpoint-every", "3", "--keep-checkpoints", "2", "--early-stopping-patience", "0", "--seed", "7"]
    killed = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    if point == "during the cache pass":
        assert list(cache.glob(".*.partial")) and not complete_checkpoints(tmp_path / ".run.partial" / "checkpoints")
    resumed = subprocess.run([str(Path(sys.executable).with_name("thawkit")), "train", "--resume", str(out), "--progress", "off"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_run(reference[strategy], out)
    assert json.loads((out / "thawkit.json").read_text())["cache"]["used"]
    assert not list(cache.glob(".*.partial")), "the killed writer's half entry was left (or loaded)"


def test_sigkill_then_resume_from_the_command_line(reference, tiny_bert, toy_csv, tmp_path):
    """The real signal: SIGKILL the CLI process right after its second checkpoint, resume with
    `thawkit train --resume OUT` only."""
    out = tmp_path / "run"
    killed = _cli_signalled_after_checkpoint(tiny_bert, toy_csv, out, "SIGKILL")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = subprocess.run([str(Path(sys.executable).with_name("thawkit")), "train", "--resume", str(out), "--progress", "off"],
                             env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_run(reference["full"], out)


def test_sigterm_keeps_the_checkpoint_says_one_line_and_exits_143(reference, tiny_bert, toy_csv, tmp_path):
    """SIGTERM (kill, docker stop, preemption) as Ctrl-C: the checkpoint kept, one line, 128 + 15."""
    out = tmp_path / "run"
    stopped = _cli_signalled_after_checkpoint(tiny_bert, toy_csv, out, "SIGTERM")
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    lines = [line for line in stopped.stderr.splitlines() if line.strip() and not line.startswith("Hint:")]  # the LR guard's
    assert len(lines) == 1 and lines[0].startswith("SIGTERM:") and f"thawkit train --resume {out}" in lines[0], lines
    assert "Traceback" not in stopped.stderr and not out.exists()
    assert complete_checkpoints(tmp_path / ".run.partial" / "checkpoints")[-1].name == "checkpoint-6"
    thawkit.train(resume=out, progress="off")
    _assert_same_run(reference["full"], out)


def test_compare_resumes_finished_and_interrupted_runs(tiny_bert, toy_csv, tmp_path, monkeypatch):
    """A comparison killed in its second job: --resume reuses the finished run (not retrained) and
    continues the interrupted one from its checkpoint."""
    from thawkit.compare import compare
    from thawkit.strategies import get_strategy_class

    options = dict(model=str(tiny_bert), data=toy_csv, strategies=["full", "lora"], epochs=2, lr=1e-3, batch_size=16, max_length=16,
                   progress="off", measure_forgetting=False, checkpoint_every="3", early_stopping_patience=0, advise=False)
    reference = compare(**options, out=tmp_path / "reference")
    first, second = sorted(["full", "lora"], key=lambda n: get_strategy_class(n).order)  # the order jobs run in
    out = tmp_path / "cmp"
    with monkeypatch.context() as patch:
        original = StrategyTrainer._save_checkpoint

        def save_then_die(self, model, trial):
            original(self, model, trial)
            if f"{second}-seed" in str(self.args.output_dir) and self.state.global_step >= 6:
                raise Killed()

        patch.setattr(StrategyTrainer, "_save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            compare(**options, out=out)
    partial = tmp_path / ".cmp.partial"
    finished = partial / "runs" / f"{first}-seed42"
    assert (finished / "thawkit.json").exists() and not out.exists()
    stamp = (finished / "thawkit.json").stat().st_mtime_ns
    with pytest.raises(ThawkitError, match="--resume"):
        compare(**options, out=out)
    resumed = compare(resume=out, progress="off")
    assert (out / "runs" / f"{first}-seed42" / "thawkit.json").stat().st_mtime_ns == stamp  # reused, not retrained
    for ref_row, row in zip(reference.rows, resumed.rows):
        assert row["strategy"] == ref_row["strategy"]
        assert row["validation_macro_f1_mean"] == pytest.approx(ref_row["validation_macro_f1_mean"], abs=1e-6)
    _assert_same_run(tmp_path / "reference" / "runs" / f"{second}-seed42", out / "runs" / f"{second}-seed42")
