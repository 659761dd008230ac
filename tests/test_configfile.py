"""Config files are read as one mapping, and every way of failing is one line naming the file."""

from __future__ import annotations

import pytest

from poisonlab.configfile import read_mapping_file


def test_yaml_and_json_mappings_are_read(tmp_path):
    (tmp_path / "a.yaml").write_text("epochs: 3\nlr: 0.1\n", encoding="utf-8")
    (tmp_path / "b.json").write_text('{"epochs": 3}', encoding="utf-8")
    assert read_mapping_file(tmp_path / "a.yaml", "training config") == {"epochs": 3, "lr": 0.1}
    assert read_mapping_file(tmp_path / "b.json", "training config") == {"epochs": 3}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "flow.yaml",
            "epochs: [1\n  lr: :\n",
            r"cannot parse x config .*flow\.yaml: .* at line 2, column 5$",
        ),
        (
            "cut.json",
            '{"epochs": ',
            r"cannot parse x config .*cut\.json: Expecting value at line 1, column 12$",
        ),
        ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), r"latin1\.yaml: not UTF-8 text \(byte 9\)$"),
        ("list.yaml", "- 1\n- 2\n", r"x config .*list\.yaml must hold a mapping, got list$"),
        ("empty.yaml", "", r"must hold a mapping, got NoneType$"),
        (
            "twice.yaml",
            "training: {epochs: 1}\nname: a\ntraining: {epochs: 5}\n",
            r"duplicate key 'training' at line 3",
        ),
        ("nested.json", '{"a": {"c": 1, "c": 2}}', r"nested\.json: duplicate key 'c'$"),
        ("unhashable.yaml", "? [1, 2]\n: x\n", r"unhashable\.yaml: found unhashable key at line 1"),
    ],
)
def test_each_failure_is_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_mapping_file(path, "x config")
    assert "\n" not in str(info.value)


def test_anchors_and_aliases_are_not_duplicates(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("base: &b {epochs: 1}\nother: *b\n", encoding="utf-8")
    assert read_mapping_file(path, "x config") == {"base": {"epochs": 1}, "other": {"epochs": 1}}


def test_a_folder_or_a_missing_file_is_named_as_such(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"x config .* is a folder, not a file"):
        read_mapping_file(tmp_path, "x config")
    with pytest.raises(FileNotFoundError, match=r"x config not found: .*nope\.yaml"):
        read_mapping_file(tmp_path / "nope.yaml", "x config")
