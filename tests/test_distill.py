"""`thawkit distill`: a layers:N student initialised from the teacher learns from its soft targets,
keeps most of its metric, and is a normal run."""

from __future__ import annotations

import json

import pytest

import thawkit
from thawkit.cli.app import main
from thawkit.engine.programs.distill import evenly_spaced
from thawkit.testing import make_tiny_model, write_toy_csv


def test_evenly_spaced_layers_keep_the_top():
    assert evenly_spaced(6, 3) == [1, 3, 5] and evenly_spaced(12, 6)[-1] == 11 and evenly_spaced(4, 4) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    model = make_tiny_model(root / "deep", num_layers=4)
    data = write_toy_csv(root / "toy.csv", n=240)
    run = thawkit.train(data=data, model=str(model), strategy="full", epochs=5, lr=2e-3, batch_size=8, max_length=16, out=root / "run",
                        progress="off", measure_forgetting=False)
    return run, data


def test_layers_student_keeps_the_teachers_metric(teacher, tmp_path):
    teacher_run, data = teacher
    assert teacher_run.metrics["validation"]["accuracy"] > 0.9  # a teacher worth distilling
    student, facts = thawkit.distill(teacher_run.path, "layers:2", data=data, validation=data, epochs=5, lr=2e-3, batch_size=8, max_length=16,
                                     out=tmp_path / "student", progress="off", measure_forgetting=False)
    assert facts["student_params"] < facts["teacher_params"]
    assert facts["retained_share"] >= 0.95 and facts["compared_on"] == str(data)
    assert facts["speedup"] > 0
    saved = json.loads((tmp_path / "student" / "distillation.json").read_text())
    assert saved["student"] == "layers:2" and len(student.model.base_model.encoder.layer) == 2
    # Written after the run was published, still thawkit's: a later --overwrite may replace it.
    assert "distillation.json" in json.loads((tmp_path / "student" / ".thawkit-written").read_text())
    assert not (tmp_path / "student-student-base").exists()  # the init folder is temporary for a full student
    reloaded = thawkit.load(tmp_path / "student")  # a normal run
    assert reloaded.predict(["the film was great"])[0]["label"] == student.predict(["the film was great"])[0]["label"]


def test_soft_targets_are_used(teacher, tmp_path, monkeypatch):
    """alpha=1: the labels play no part; the student still learns, from the teacher alone."""
    teacher_run, data = teacher
    import thawkit.engine.core.distill_loss as loss_module

    seen = {"distilled": 0}
    original = loss_module.Distillation.loss

    def counting(self, *args, **kwargs):
        seen["distilled"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loss_module.Distillation, "loss", counting)
    _, facts = thawkit.distill(teacher_run.path, "layers:2", data=data, validation=data, epochs=5, lr=2e-3, batch_size=8, max_length=16,
                               distill_alpha=1.0, out=tmp_path / "student", progress="off", measure_forgetting=False)
    assert seen["distilled"] > 0 and facts["retained_share"] >= 0.9


def test_distill_cli_and_bad_teacher(teacher, tmp_path, capsys):
    teacher_run, data = teacher
    main(["distill", "--teacher", str(teacher_run.path), "--student", "layers:1", "--data", str(data), "--epochs", "1",
          "--max-length", "16", "--out", str(tmp_path / "s"), "--progress", "off", "--no-measure-forgetting"])
    assert "faster" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["distill", "--teacher", str(teacher_run.path), "--student", "layers:9", "--data", str(data), "--out", str(tmp_path / "t")])
    assert exit_info.value.code == 2 and "layers:9" in capsys.readouterr().err


def test_refused_distillations_leave_no_out_and_no_student_base(teacher, tmp_path, capsys):
    """Data labelled otherwise than the teacher, or --unlabeled that is not text: exit 2 before --out
    is written, and the layers:N initialisation folder (a temporary) is gone too."""
    teacher_run, data = teacher
    other = tmp_path / "other.csv"
    other.write_text(data.read_text().replace(",positive", ",good").replace(",negative", ",bad"))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    for extra, fragment in (([ "--data", str(other)], "differ from the teacher's"),
                            (["--data", str(data), "--unlabeled", str(binary)], str(binary))):
        with pytest.raises(SystemExit) as exit_info:
            main(["distill", "--teacher", str(teacher_run.path), "--student", "layers:1", *extra, "--epochs", "1", "--max-length", "16",
                  "--out", str(tmp_path / "s"), "--progress", "off", "--no-measure-forgetting"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and fragment in err and "Traceback" not in err, err
        assert not (tmp_path / "s").exists() and not (tmp_path / "s-student-base").exists(), sorted(tmp_path.iterdir())
        assert not any(p.name.startswith(".s") for p in tmp_path.iterdir())


def test_soft_targets_teach_what_labels_cannot(teacher, tmp_path):
    """Distillation data whose labels are random: the distilled student still agrees with its teacher
    on new texts far more often than the same student trained on those labels alone."""
    import csv
    import random

    from thawkit.testing import toy_sentiment_rows

    teacher_run, _ = teacher
    rng = random.Random(1)
    noisy = tmp_path / "noisy.csv"
    with noisy.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *[(text, rng.choice(["positive", "negative"]))
                                                           for text, _ in toy_sentiment_rows(240, seed=5)]])
    held_out = [text for text, _ in toy_sentiment_rows(200, seed=9)]
    expected = [p["label"] for p in teacher_run.predict(held_out)]
    agreement = {}
    for alpha in (0.9, 0.0):
        student, _ = thawkit.distill(teacher_run.path, "layers:2", data=noisy, epochs=4, lr=2e-3, batch_size=8, max_length=16,
                                     distill_alpha=alpha, out=tmp_path / f"alpha{alpha}", progress="off", measure_forgetting=False,
                                     class_weights="none", select_best=False)
        predicted = [p["label"] for p in student.predict(held_out)]
        agreement[alpha] = sum(a == b for a, b in zip(predicted, expected)) / len(held_out)
    assert agreement[0.9] >= 0.9 and agreement[0.9] - agreement[0.0] >= 0.2, agreement


def test_unlabeled_text_labelled_by_the_teacher_extends_training(teacher, tmp_path):
    from thawkit.testing import toy_sentiment_rows

    teacher_run, data = teacher
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(text for text, _ in toy_sentiment_rows(100, seed=3)) + "\n")
    small = tmp_path / "small.csv"
    small.write_text("\n".join(data.read_text().splitlines()[:41]) + "\n")  # header + 40 labelled rows
    student, facts = thawkit.distill(teacher_run.path, "layers:2", data=small, unlabeled=unlabeled, epochs=3, lr=2e-3, batch_size=8,
                                     max_length=16, out=tmp_path / "student", progress="off", measure_forgetting=False)
    assert facts["teacher_labelled_examples"] == 100 and student.info["distillation"]["teacher_labelled_examples"] == 100
    assert student.info["num_train_examples"] == 100 + 40 - student.info["num_validation_examples"]  # only training grows
    with pytest.raises(SystemExit) as exit_info:
        main(["distill", "--teacher", str(teacher_run.path), "--data", str(small), "--unlabeled", str(tmp_path / "missing.txt"),
              "--out", str(tmp_path / "t")])
    assert exit_info.value.code == 2 and not (tmp_path / "t").exists()


def test_hidden_state_matching_pulls_student_layers_to_their_teacher_layers(teacher, tmp_path):
    import torch

    teacher_run, data = teacher
    batch = teacher_run.tokenizer(["the film was great and the plot superb", "awful boring music"], padding=True, return_tensors="pt")
    with torch.no_grad():
        teacher_states = teacher_run.model(**batch, output_hidden_states=True).hidden_states
    distances = {}
    for weight in (0.0, 5.0):
        student, facts = thawkit.distill(teacher_run.path, "layers:2", data=data, epochs=3, lr=2e-3, batch_size=8, max_length=16,
                                         distill_hidden_weight=weight, out=tmp_path / f"w{weight}", progress="off",
                                         measure_forgetting=False)
        with torch.no_grad():
            states = student.model.eval()(**batch, output_hidden_states=True).hidden_states
        kept = [1, 3]  # layers:2 of 4
        distances[weight] = sum(float(((states[j + 1] - teacher_states[i + 1]) ** 2).mean()) for j, i in enumerate(kept))
        assert facts["layer_map"] == (kept if weight else [])
    assert distances[5.0] < 0.5 * distances[0.0], distances


def test_ner_and_similarity_students(tiny_bert, tmp_path):
    conll = "\n\n".join(["Peter B-PER\nBlackburn I-PER\nvisited O\nBrussels B-LOC\n. O", "EU B-ORG\nrejects O\nGerman B-MISC\ncall O",
                         "Angela B-PER\nMerkel I-PER\nflew O\nto O\nParis B-LOC", "The O\nUN B-ORG\nmet O\nin O\nGeneva B-LOC"] * 10) + "\n"
    ner_file = tmp_path / "ner.txt"
    ner_file.write_text(conll)
    deep = make_tiny_model(tmp_path / "deep", num_layers=4)
    ner_teacher = thawkit.train(task="ner", data=ner_file, validation=ner_file, model=str(deep), epochs=6, lr=5e-3, batch_size=8,
                                max_length=32, out=tmp_path / "ner-teacher", progress="off", measure_forgetting=False)
    unlabeled = tmp_path / "sentences.txt"
    unlabeled.write_text("Peter Blackburn visited Geneva\nThe EU met in Paris\n")
    student, facts = thawkit.distill(ner_teacher.path, "layers:2", data=ner_file, validation=ner_file, unlabeled=unlabeled, epochs=6,
                                     lr=5e-3, batch_size=8, max_length=32, distill_hidden_weight=1.0, out=tmp_path / "ner-student",
                                     progress="off", measure_forgetting=False)
    assert student.info["task"] == "token-classification" and facts["teacher_labelled_examples"] == 2
    assert facts["metric"] == "f1" and facts["retained_share"] >= 0.8 and facts["speedup"] > 0
    assert thawkit.load(tmp_path / "ner-student").predict(["Angela Merkel flew to Paris"])[0]["entities"]

    pairs = tmp_path / "pairs.tsv"
    rows = [("a plane is taking off", "an air plane is taking off", 5.0), ("a man plays a flute", "a man plays a guitar", 2.2),
            ("a cat sleeps", "the stock market fell", 0.0), ("a woman slices onions", "a woman is cutting an onion", 4.6)]
    pairs.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows * 6))
    sim_teacher = thawkit.train(task="similarity", data=pairs, validation=pairs, model=str(deep), epochs=4, lr=5e-3, batch_size=8,
                                max_length=32, out=tmp_path / "sim-teacher", progress="off", measure_forgetting=False)
    student, facts = thawkit.distill(sim_teacher.path, "layers:2", data=pairs, validation=pairs, epochs=4, lr=5e-3, batch_size=8,
                                     max_length=32, out=tmp_path / "sim-student", progress="off", measure_forgetting=False)
    assert student.info["task"] == "sentence-similarity" and facts["metric"] == "spearman"
    assert facts["student_params"] < facts["teacher_params"] and facts["teacher_value"] is not None
    assert len(thawkit.load(tmp_path / "sim-student").similarity(["a cat"], ["a dog"])) == 1



@pytest.fixture(scope="module")
def decoder_teacher(tmp_path_factory):
    """A tiny Llama classifier: a byte-level BPE tokenizer of 512 tokens, unlike the student's WordPiece."""
    from thawkit.testing import make_tiny_decoder

    root = tmp_path_factory.mktemp("decoder-teacher")
    data = write_toy_csv(root / "toy.csv", n=240)
    run = thawkit.train(data=data, model=str(make_tiny_decoder(root / "llama", num_layers=2)), strategy="full", epochs=6, lr=3e-3,
                        batch_size=8, max_length=16, out=root / "run", progress="off", measure_forgetting=False)
    return run, data


def test_a_decoder_teacher_teaches_an_encoder_student_across_tokenizers(decoder_teacher, tiny_bert, tmp_path):
    """The soft targets come from the teacher's own tokenizer: on data whose labels are all flipped, a
    student taught by the teacher alone (alpha 1) predicts what the teacher does, one taught by the labels
    alone the opposite (the student's WordPiece ids fed to the teacher would be garbage, or out of its
    512-token vocabulary)."""
    from thawkit.testing import toy_sentiment_rows

    teacher_run, data = decoder_teacher
    assert teacher_run.metrics["validation"]["accuracy"] > 0.9 and len(teacher_run.tokenizer) < 1000
    flipped = tmp_path / "flipped.csv"
    flipped.write_text(data.read_text().replace(",positive", ",TMP").replace(",negative", ",positive").replace(",TMP", ",negative"))
    held_out = [text for text, _ in toy_sentiment_rows(200, seed=9)]
    expected = [p["label"] for p in teacher_run.predict(held_out)]
    agreement = {}
    for alpha in (1.0, 0.0):
        student, facts = thawkit.distill(teacher_run.path, str(tiny_bert), data=flipped, epochs=5, lr=3e-3, batch_size=8,
                                         max_length=16, distill_alpha=alpha, out=tmp_path / f"alpha{alpha}", progress="off",
                                         measure_forgetting=False, select_best=False)
        if alpha:
            assert "teacher's own tokenizer" in facts["soft_targets"] and student.info["timings"]["teacher_targets"] > 0
        else:  # the teacher's outputs would weigh nothing: not computed
            assert facts["soft_targets"].startswith("none") and student.info["timings"]["teacher_targets"] < 0.01
        predicted = [p["label"] for p in student.predict(held_out)]
        agreement[alpha] = sum(a == b for a, b in zip(predicted, expected)) / len(held_out)
    assert agreement[1.0] >= 0.9 and agreement[0.0] <= 0.1, agreement
    assert type(student.model).__name__.startswith("Bert")  # an encoder student, a normal run


def test_hidden_state_matching_across_tokenizers_is_refused(decoder_teacher, tiny_bert, tmp_path, capsys):
    teacher_run, data = decoder_teacher
    with pytest.raises(SystemExit) as exit_info:
        main(["distill", "--teacher", str(teacher_run.path), "--student", str(tiny_bert), "--data", str(data),
              "--distill-hidden-weight", "1", "--epochs", "1", "--out", str(tmp_path / "s"), "--progress", "off"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "tokenize differently" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_ner_soft_targets_align_by_word_across_tokenizers(tiny_bert, tmp_path):
    """A decoder NER teacher's per-word logits land on the student's first sub-token of each word,
    however the two tokenizers split the words."""
    from thawkit.data.ner import labelled_words
    from thawkit.models.backbone import load_tokenizer
    from thawkit.tasks import get_task
    from thawkit.tasks.base import TaskData
    from thawkit.testing import make_tiny_decoder

    conll = "\n\n".join(["Peter B-PER\nBlackburn I-PER\nvisited O\nBrussels B-LOC\n. O",
                          "Angela B-PER\nMerkel I-PER\nflew O\nto O\nParis B-LOC"] * 12) + "\n"
    ner_file = tmp_path / "ner.txt"
    ner_file.write_text(conll)
    teacher = thawkit.train(task="ner", data=ner_file, validation=ner_file, model=str(make_tiny_decoder(tmp_path / "llama")),
                            epochs=8, lr=5e-3, batch_size=8, max_length=32, out=tmp_path / "teacher", progress="off",
                            measure_forgetting=False)
    sentences = [(["Angela", "Merkel", "visited", "Brussels"], ["B-PER", "I-PER", "O", "B-LOC"]),
                 (["Peter"] * 30, ["B-PER"] * 30)]  # the second is cut into pieces at max_length 16
    student_tokenizer = load_tokenizer(str(tiny_bert))
    task = get_task("ner")
    data = TaskData(sentences, sentences, None, teacher.labels, False, "given")
    cfg = type("Cfg", (), {"max_length": 16})()
    targets = task.teacher_targets(teacher, data, student_tokenizer, cfg)
    encoded = task.encode(data, "train", student_tokenizer, cfg)
    assert len(targets) == len(encoded) > 2
    per_word = teacher.word_logits([words for words, _ in sentences])
    assert [w for w in labelled_words(sentences[0][0], student_tokenizer, 16)] == [[0, 1, 2, 3]]
    import torch

    for row, target in zip(encoded, targets):
        labels = torch.tensor([row["labels"]])
        placed = task.distillation_targets([target], labels)
        assert placed.shape == (1, len(row["labels"]), len(teacher.labels))
        assert torch.count_nonzero(placed[labels == -100]) == 0
    assert torch.equal(targets[0], torch.from_numpy(per_word[0]))
    tags, _ = teacher.word_predictions(sentences[0][0])
    assert [teacher.labels[i] for i in per_word[0].argmax(-1)] == tags


def test_the_teacher_scores_each_text_once(teacher, monkeypatch):
    """The --unlabeled texts the teacher labelled are not run through it again for their soft targets."""
    from thawkit.tasks import get_task

    teacher_run, _ = teacher
    task = get_task("classification")
    scored: list[str] = []
    original = teacher_run.logits

    def counting(texts, *args, **kwargs):
        scored.extend(texts)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(teacher_run, "logits", counting)
    first = task.teacher_logits(teacher_run, ["great film", "awful plot", "great film"])
    again = task.teacher_logits(teacher_run, ["awful plot", "great film", "dull music"])
    assert scored == ["great film", "awful plot", "dull music"]
    assert (first[0] == again[1]).all() and (first[1] == again[0]).all() and (first[0] == first[2]).all()
