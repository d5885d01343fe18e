"""`thawkit dapt` and `train --dapt-text`: continued MLM pretraining that lowers the domain loss,
writes a backbone `train --model` accepts, and chains into fine-tuning."""

from __future__ import annotations

import json
import shutil

import pytest

import thawkit
from thawkit.cli.app import main

DOMAIN = [
    "the kinase inhibitor reduced phosphorylation of the receptor in treated cells",
    "expression of the gene was measured by quantitative pcr in tumour samples",
    "patients receiving the drug showed lower levels of the inflammatory marker",
    "the protein binds the promoter and represses transcription of the target gene",
] * 30


@pytest.fixture(scope="module")
def domain_text(tmp_path_factory):
    path = tmp_path_factory.mktemp("domain") / "abstracts.txt"
    path.write_text("\n".join(DOMAIN) + "\n")
    return path


def test_dapt_lowers_the_domain_loss_and_writes_a_backbone(tiny_bert, domain_text, toy_csv, tmp_path):
    facts = thawkit.dapt(domain_text, model=str(tiny_bert), out=tmp_path / "adapted", max_steps=30, batch_size=8, max_length=32,
                         lr=5e-3, whole_word=True)
    before, after = facts["metrics"]["before"], facts["metrics"]["after"]
    assert after["domain_held_out"]["mlm_loss"] < before["domain_held_out"]["mlm_loss"] - 0.5
    assert facts["new_mlm_head"] and facts["global_steps"] == 30
    saved = json.loads((tmp_path / "adapted" / "dapt.json").read_text())
    assert saved["metrics"]["after"]["general_english"]["pseudo_perplexity"] > 0
    run = thawkit.train(data=toy_csv, model=str(tmp_path / "adapted"), strategy="partial", strategy_options={"freeze_layers": 1},
                        epochs=1, max_length=16, out=tmp_path / "run", progress="off", measure_forgetting=False)
    assert run.info["base_model"] == str(tmp_path / "adapted") and run.info["cache"]["used"]


def test_train_with_dapt_text_chains_both(tiny_bert, domain_text, toy_csv, tmp_path):
    run = thawkit.train(data=toy_csv, model=str(tiny_bert), dapt_text=domain_text, strategy="full", epochs=1, max_length=16,
                        out=tmp_path / "run", progress="off", measure_forgetting=False)
    assert (tmp_path / "run-dapt" / "model.safetensors").exists()
    assert run.info["dapt"]["base_model"] == str(tiny_bert) and run.info["base_model"] == str(tmp_path / "run-dapt")
    assert run.info["config"]["dapt_text"] is None  # a resumed run does not adapt again


def test_sentence_transformers_pooling_travels_with_the_adapted_encoder(tiny_bert, domain_text, tmp_path):
    from thawkit.models.backbone import checkpoint_pooling

    source = tmp_path / "st"
    shutil.copytree(tiny_bert, source)
    (source / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                                                     {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (source / "1_Pooling").mkdir()
    (source / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    thawkit.dapt(domain_text, model=str(source), out=tmp_path / "adapted", max_steps=2, batch_size=8, max_length=32)
    assert checkpoint_pooling(str(source)) != checkpoint_pooling(str(tiny_bert))  # the files say something
    assert checkpoint_pooling(str(tmp_path / "adapted")) == checkpoint_pooling(str(source))


def test_dapt_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "one.txt").write_text("just one line\n")
    for args, fragment in [(["--text", str(tmp_path / "missing.txt")], "not found"),
                           (["--text", str(tmp_path / "one.txt")], "at least a few documents"),
                           (["--text", str(tmp_path / "one.txt"), "--mlm-prob", "1.5"], "--mlm-prob")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["dapt", *args, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_the_adapted_folder_has_a_card_and_loads_in_sentence_transformers(tiny_bert, domain_text, tmp_path):
    """A card huggingface_hub parses (base, tags, the measured before/after), and every module
    modules.json lists has its folder (Normalize has no files, yet its folder must exist)."""
    from huggingface_hub import ModelCard
    from sentence_transformers import SentenceTransformer

    source = tmp_path / "st"
    shutil.copytree(tiny_bert, source)
    (source / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (source / "1_Pooling").mkdir()
    (source / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    thawkit.dapt(domain_text, model=str(source), out=tmp_path / "adapted", max_steps=2, batch_size=8, max_length=32)
    card = ModelCard.load(tmp_path / "adapted" / "README.md")
    assert card.data.base_model == str(source) and "domain-adaptive-pretraining" in card.data.tags
    assert "| domain held out | mlm loss |" in card.text and "thawkit train --model" in card.text
    assert (tmp_path / "adapted" / "2_Normalize").is_dir()
    embedding = SentenceTransformer(str(tmp_path / "adapted"), device="cpu").encode(["a sentence"])
    assert abs(float((embedding**2).sum()) - 1.0) < 1e-4  # Normalize ran
