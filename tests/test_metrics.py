import numpy as np
import pytest

from cifar_xai.metrics import classification_metrics, confusion_matrix


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_hand_computed_precision_recall_f1():
    # true: a a a b b c ; pred: a a b b c c
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8),
                                   "support": 3}
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro"]["recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)


def test_a_class_never_predicted_scores_zero_not_nan():
    m = classification_metrics([0, 1, 1], [1, 1, 1], ["a", "b"])
    assert m["per_class"]["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert not np.isnan(m["macro"]["f1"])


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        confusion_matrix([0, 1, 2], [0, 1], 3)
