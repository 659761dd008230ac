"""The one strict label parser: an exact class name, or an index in ASCII digits; nothing that
Python's ``int()`` would also take (other scripts' digits, signs, spaces, underscores)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from poisonlab.data.dataset import Dataset
from poisonlab.data.images import load_image_folder
from poisonlab.data.labels import describe_classes, is_ascii_index, resolve_label

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS = tuple(str(i) for i in range(10))


@pytest.mark.parametrize(
    ("label", "names", "expected"),
    [
        ("cat", CIFAR, 3),
        ("3", CIFAR, 3),
        ("03", CIFAR, 3),
        (3, CIFAR, 3),
        (np.int64(9), CIFAR, 9),
        ("3", DIGITS, 3),
        ("7", ("7", "3"), 0),  # a class named like an index wins over the index
        ("1", ("7", "3"), 1),
    ],
)
def test_names_and_ascii_indices(label, names, expected):
    assert resolve_label(label, names) == expected


@pytest.mark.parametrize(
    "label",
    [
        "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads 3
        "\uff13",  # FULLWIDTH DIGIT THREE
        "\u00b3",  # SUPERSCRIPT THREE: str.isdigit() is True
        "\u09e9",  # BENGALI DIGIT THREE
        "+3",
        "-0",
        " 3",
        "3 ",
        "3\n",
        "0_3",
        "3.0",
        "0x3",
        "",
        "Cat",  # names are exact
        "cat ",
    ],
)
def test_everything_else_is_an_unknown_label_that_lists_the_classes(label):
    with pytest.raises(ValueError, match="unknown label") as info:
        resolve_label(label, CIFAR)
    assert "'airplane'" in str(info.value) and "'truck'" in str(info.value)
    assert "index 0-9 in ASCII digits" in str(info.value)
    assert not is_ascii_index(label)


@pytest.mark.parametrize("label", [True, False, np.bool_(True), 3.0, None, b"3", ["3"]])
def test_values_that_are_neither_str_nor_int(label):
    with pytest.raises(ValueError, match="must be a class name \\(str\\) or index \\(int\\)") as info:
        resolve_label(label, CIFAR)
    assert "'cat'" in str(info.value)


@pytest.mark.parametrize("label", ["10", 10, -1, "9" * 5000, "0" * 5000 + "12"])
def test_indices_out_of_range_name_the_range_and_the_classes(label):
    # 5000 digits: int() would raise its own "Exceeds the limit" error; this is the range error
    with pytest.raises(ValueError, match=r"label index .* out of range \[0, 9\]") as info:
        resolve_label(label, CIFAR)
    assert "'truck'" in str(info.value) and len(str(info.value)) < 400


def test_leading_zeros_within_range():
    assert resolve_label("0" * 5000 + "7", CIFAR) == 7


def test_no_classes_and_long_class_lists():
    with pytest.raises(ValueError, match="no class names"):
        resolve_label("0", [])
    names = [f"class{i}" for i in range(100)]
    text = describe_classes(names)
    assert "'class19'" in text and "'class20'" not in text and "(100 classes)" in text
    assert "index 0-99" in text


def test_dataset_class_index_uses_the_strict_parser():
    ds = Dataset(x=np.zeros((2, 4, 4, 3), np.uint8), y=np.array([0, 1]), class_names=CIFAR[:2])
    assert ds.class_index("automobile") == 1 and ds.class_index("1") == 1 and ds.class_index(1) == 1
    with pytest.raises(ValueError, match="unknown class '\u0661'; expected one of"):
        ds.class_index("\u0661")  # Arabic-Indic one
    with pytest.raises(ValueError, match=r"class index 2 out of range \[0, 1\]"):
        ds.class_index(2)


def test_image_folder_label_is_parsed_strictly(tmp_path):
    Image.new("RGB", (4, 4), (10, 20, 30)).save(tmp_path / "a.png")
    assert set(load_image_folder(tmp_path, label="3", class_names=CIFAR, size=4).y) == {3}
    with pytest.raises(ValueError, match="unknown label '\u0663'"):
        load_image_folder(tmp_path, label="\u0663", class_names=CIFAR, size=4)
