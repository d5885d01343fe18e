import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never read or fill the user's feature cache: one folder per session, removed at its end by
# the process that made it (pytest-xdist workers and CLI subprocesses inherit the variable).
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

if "THAWKIT_CACHE_DIR" not in os.environ:
    os.environ["THAWKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="thawkit-cache-")
    atexit.register(shutil.rmtree, os.environ["THAWKIT_CACHE_DIR"], ignore_errors=True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from thawkit.logging_setup import quiet_libraries  # noqa: E402
from thawkit.testing import DECODER_ARCHITECTURES, make_tiny_decoder, make_tiny_model, write_toy_csv  # noqa: E402

quiet_libraries()

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: make_tiny_model(root / arch, arch=arch) for arch in ("bert", "roberta", "distilbert", "deberta-v2")}


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory) -> dict[str, Path]:
    """Random Llama, GPT-2 and Qwen2 decoders with a byte-level BPE tokenizer that has no pad token."""
    root = tmp_path_factory.mktemp("tiny-decoders")
    return {arch: make_tiny_decoder(root / arch, arch=arch) for arch in DECODER_ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_bert(tiny_models) -> Path:
    return tiny_models["bert"]


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory) -> Path:
    return write_toy_csv(tmp_path_factory.mktemp("data") / "toy.csv", n=120)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.exists():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
