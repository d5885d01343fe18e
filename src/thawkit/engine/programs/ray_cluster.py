"""Ray: connecting to a cluster, and the one training pipeline run by Ray Train's TorchTrainer.

Distributed work goes through Ray's own engines (tasks, Tune, Train); thawkit adds only what
they lack: the frozen-layer cache shipped through the object store, and run folders brought back
to the driver when a worker wrote them on another node.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from thawkit.runplan import RunPlan, out_dir
from thawkit.errors import ConfigError

log = logging.getLogger("thawkit")

# Environment a worker on another node needs to behave like this process.
_PROPAGATED = ("HF_HUB_OFFLINE", "HF_HOME", "HF_ENDPOINT", "TOKENIZERS_PARALLELISM", "THAWKIT_DEBUG")
# Tests set this to exercise the cross-node path (pack, ship, unpack) on one machine.
SHIP_RUNS_ENV = "THAWKIT_RAY_SHIP_RUNS"


def connect_ray(address: str | None) -> Any:
    """The ``ray`` module, connected: to ``address`` (``auto``, ``ray://host:10001``), or to a local
    Ray started here; an already initialised Ray (a test's, a notebook's) is used as it is."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed; fix: pip install 'thawkit[ray]' (or drop the Ray option)") from None
    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in _PROPAGATED if k in os.environ}
    try:
        # Ray's own warnings about its state API (no dashboard here) and actor restarts are noise to
        # a thawkit user; thawkit's messages from the workers still reach the console.
        ray.init(address=address, log_to_driver=True, logging_config=ray.LoggingConfig(log_level="ERROR"),
                 runtime_env={"env_vars": env} if env else None)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--ray-address {address}: cannot connect to Ray ({str(exc).splitlines()[0]}); fix: start the "
                          "cluster ('ray start --head') or pass its address") from None
    return ray


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def must_ship(driver_node: str) -> bool:
    """True where this worker's files are not the driver's (another node), or a test says so."""
    return node_id() != driver_node or os.environ.get(SHIP_RUNS_ENV) == "1"


def pack_folder(folder: Path) -> bytes:
    """A run folder as an uncompressed tar (weights do not compress), to return through Ray."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname=".")
    return buffer.getvalue()


def unpack_folder(packed: bytes, folder: Path) -> None:
    """Unpack beside ``folder`` and rename into place: never a half-written folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".unpack", dir=folder.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r") as archive:
            archive.extractall(staging, filter="data")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train_on_ray(plan: RunPlan, extra_facts: dict[str, Any] | None = None) -> Path:
    """Train as ``plan`` says on its ``ray_workers`` Ray Train workers (TorchTrainer, DDP on gloo or
    NCCL); every worker runs the plan it is shipped (planned once, on the driver, for that many
    processes); the run folder is the one a single process writes. Returns its path on this machine."""
    from thawkit.rundir import check_destination, partial_dir_for

    cfg = plan.config
    ray = connect_ray(cfg.ray_address)
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise ConfigError("--ray-workers needs Ray Train; fix: pip install 'thawkit[ray]'") from None
    out = out_dir(plan).absolute()
    check_destination(out, cfg.overwrite)
    storage = partial_dir_for(out).parent / f".{out.name}.ray"
    shipped_plan = plan.with_updates("Ray Train: the driver's folder, as an absolute path", out=str(out)).as_dict()
    use_gpu = cfg.ray_gpus > 0
    # Ray Train's print patch ignores print(file=...): Ray's own dis.dis(file=StringIO) lands on the console.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"plan": shipped_plan, "extra_facts": extra_facts, "driver_node": ray.get_runtime_context().get_node_id()},
        scaling_config=ScalingConfig(num_workers=cfg.ray_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cfg.ray_cpus, **({"GPU": cfg.ray_gpus} if use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name="train", storage_path=str(storage)),
    )
    try:
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        if result.checkpoint is not None:  # rank 0 ran on another node: its run folder, shipped
            with result.checkpoint.as_directory() as shipped:
                unpack_folder(pack_folder(Path(shipped)), out)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return out


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the whole pipeline, its Trainer prepared for Ray Train and reporting
    each checkpoint to it; rank 0 writes the run folder (and ships it if the driver is elsewhere)."""
    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from thawkit.engine.core.loop import RunHooks
    from thawkit.engine.core.pipeline import run_training

    plan = RunPlan.from_dict(config["plan"])
    context = ray.train.get_context()
    torch.set_num_threads(max(1, int(plan.config.ray_cpus)))
    hooks = RunHooks(callbacks=[RayTrainReportCallback()], wrap_trainer=prepare_trainer)
    run = run_training(plan, {**(config.get("extra_facts") or {}), "ray_workers": context.get_world_size()}, hooks=hooks)
    metrics = {"validation_" + k: v for k, v in run.metrics.get("validation", {}).items() if isinstance(v, (int, float))}
    if context.get_world_rank() == 0 and must_ship(config["driver_node"]):
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(run.path)))
    else:
        ray.train.report(metrics)
