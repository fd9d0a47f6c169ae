"""Self-training on the target text: class-balanced pseudo-labels (hfkd.self_training) and the `self_trained` model
of a cross-domain experiment."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hfkd.losses import IGNORE_INDEX
from hfkd.self_training import class_balanced_pseudo_labels


def test_pseudo_labels_keep_the_most_confident_share_of_every_predicted_class():
    rng = np.random.default_rng(0)
    # 90 rows the model is sure are class 0, 10 it leans to class 2 with less confidence: a global threshold keeping
    # half the rows would keep class 0 only; the class-balanced one keeps half of each predicted class
    logits = np.zeros((100, 3))
    logits[:90, 0] = 5 + rng.random(90)
    logits[90:, 2] = 1 + rng.random(10)
    labels = class_balanced_pseudo_labels(logits, 0.5)
    assert ((labels == 0).sum(), (labels == 1).sum(), (labels == 2).sum()) == (45, 0, 5)
    assert (labels == IGNORE_INDEX).sum() == 50
    for c, rows in ((0, slice(0, 90)), (2, slice(90, 100))):  # the kept ones are the most confident
        confidence = logits[rows].max(-1)
        kept = labels[rows] == c
        assert confidence[kept].min() >= confidence[~kept].max()
    global_kept = np.argsort(-(np.exp(logits).max(-1) / np.exp(logits).sum(-1)))[:50]
    assert set(logits[global_kept].argmax(-1)) == {0}
    assert (class_balanced_pseudo_labels(logits, 1.0) == logits.argmax(-1)).all()
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]; got fraction=0"):
        class_balanced_pseudo_labels(logits, 0)


def test_self_trained_student_learns_pseudo_labels_in_rounds(opt_in_experiment):
    _, results = opt_in_experiment  # two rounds, fraction 0.5; the teacher and adaptive student reused
    block = results["blocks"][0]
    assert block["stages"]["teacher"]["reused"] and block["stages"]["adaptive"]["reused"]
    assert not block["stages"]["self_trained"]["reused"]
    stage = block["stages"]["self_trained"]
    unlabeled = sum(stage["train"]["unlabeled_rows"].values())
    # about half of each predicted class (rounded up per class)
    assert unlabeled / 2 <= stage["train"]["pseudo_labelled_rows"] <= unlabeled / 2 + 3
    # round 1 is a stage of its own, labelled by the teacher; round 2 is labelled by round 1's student
    folder = os.path.dirname(stage["path"])
    (first,) = [d for d in os.listdir(folder) if d.startswith("self_trained-round1-")]
    first_record = json.loads(open(os.path.join(folder, first, "hfkd_stage.json")).read())
    final_record = json.loads(open(os.path.join(stage["path"], "hfkd_stage.json")).read())
    assert first_record["status"] == "done" and first_record["key"]["self_training"]["round"] == 1
    assert first_record["key"]["self_training"]["labeler"] == block["stages"]["teacher"]["hash"]
    assert final_record["key"]["self_training"]["labeler"] == first_record["hash"]
    # hard labels make it another student than the adaptive one, compared with it
    assert block["metrics"]["self_trained"]["air"]["kl"] != block["metrics"]["adaptive"]["air"]["kl"]
    assert ("self_trained", "adaptive") in {(c["a"], c["b"]) for c in block["comparisons"]}
    assert "hard labels" in results["models"]["self_trained"]["description"]
    card = open(os.path.join(stage["path"], "README.md")).read()
    assert "self-training" in card
