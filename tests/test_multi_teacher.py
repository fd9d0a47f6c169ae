"""One teacher per source domain: combined soft targets (hfkd.multi_teacher) and the `multi_teacher` model."""

from __future__ import annotations

import numpy as np
import pytest

from hfkd.multi_teacher import combine_teacher_logits

from .conftest import DOMAINS
from .conftest import run_experiment as run


def test_combined_soft_targets_are_the_weighted_mixture():
    sure, unsure = np.log([[0.9, 0.05, 0.05], [0.2, 0.6, 0.2]]), np.log([[0.4, 0.3, 0.3], [0.34, 0.33, 0.33]])
    mean = np.exp(combine_teacher_logits([sure, unsure], "mean"))
    np.testing.assert_allclose(mean, (np.exp(sure) + np.exp(unsure)) / 2, atol=1e-6)
    # confidence: each teacher weighted per row by its highest probability (row 0: 0.9 vs 0.4)
    weighted = np.exp(combine_teacher_logits([sure, unsure], "confidence"))
    np.testing.assert_allclose(weighted[0], (0.9 * np.exp(sure[0]) + 0.4 * np.exp(unsure[0])) / 1.3, atol=1e-6)
    assert weighted[0, 0] > mean[0, 0]  # the sure teacher speaks louder
    np.testing.assert_allclose(weighted.sum(-1), 1, atol=1e-6)
    # logits, not probabilities, go in: a shift per row changes nothing
    np.testing.assert_allclose(combine_teacher_logits([sure + 5, unsure - 2]), combine_teacher_logits([sure, unsure]))
    with pytest.raises(ValueError, match="multi_teacher_weighting='max' is not valid"):
        combine_teacher_logits([sure], "max")
    with pytest.raises(ValueError, match="different shapes"):
        combine_teacher_logits([sure, unsure[:1]])


def test_multi_teacher_student_shares_one_teacher_per_domain_across_blocks(loo_experiment, tmp_path):
    _, results = loo_experiment  # leave-one-out over the three tiny domains, with multi_teacher
    blocks = results["blocks"]
    teachers = {}
    for block in blocks:
        stage = block["stages"]["multi_teacher"]
        assert len(stage["teachers"]) == len(block["source_domains"]) == 2
        for domain, path in zip(block["source_domains"], stage["teachers"], strict=True):
            assert "single-source" in path
            assert teachers.setdefault(domain, path) == path  # the same teacher of a domain in every block
        assert stage["train"]["teachers"] == 2
        assert ("multi_teacher", "teacher") in {(c["a"], c["b"]) for c in block["comparisons"]}
    assert set(teachers) == set(DOMAINS)
    assert "one teacher per source domain" in results["models"]["multi_teacher"]["description"]
    with pytest.raises(ValueError, match="'multi_teacher', which needs two or more source domains"):
        run(tmp_path, "--models", "teacher", "multi_teacher")
