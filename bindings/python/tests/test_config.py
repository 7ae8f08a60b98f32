"""teacher.Config: dict/YAML construction, typed access, errors with file:line:col."""
import re

import pytest

import teacher


def test_defaults_and_types():
    c = teacher.Config()
    assert c["nn.hidden_dim"] == 256 and isinstance(c["nn.hidden_dim"], int)
    assert isinstance(c["student.lr"], float)
    assert c["teacher.enabled"] is False
    assert c["student.loss"] == "tb"
    assert "student.lr" in c and "student.nope" not in c
    keys = c.keys()
    assert keys[0] == "seed" and "teacher.reward.C" in keys and len(keys) == len(set(keys))
    d = c.to_dict()
    assert set(d) == set(keys)
    assert c.to_dict(nested=True)["teacher"]["reward"]["C"] == c["teacher.reward.C"]


def test_from_nested_and_dotted_dict():
    c = teacher.Config({"student": {"lr": 2e-3, "loss": "db"}, "nn.hidden_dim": 64,
                        "teacher": {"enabled": True, "reward.C": 5}})
    assert c["student.lr"] == 2e-3 and c["student.loss"] == "db"
    assert c["nn.hidden_dim"] == 64 and c["teacher.enabled"] is True
    assert c["teacher.reward.C"] == 5.0
    c["seed"] = 7
    c["student.lr"] = 1          # int for a double key
    c["nn.n_layers"] = "3"       # text is parsed as the key's type
    c["buffer.enabled"] = "true"
    assert (c["seed"], c["student.lr"], c["nn.n_layers"], c["buffer.enabled"]) == (7, 1.0, 3, True)
    c.update(student__lr=5e-4)
    assert c["student.lr"] == 5e-4


def test_describe():
    info = teacher.Config.describe("student.loss")
    assert info.type == "enum" and "tb" in info.choices and info.doc
    info = teacher.Config.describe("nn.hidden_dim")
    assert info.type == "int" and info.min >= 1 and info.max >= 256 and info.default == "256"


def test_value_errors():
    c = teacher.Config()
    with pytest.raises(teacher.ConfigError) as ei:
        c["student.lrr"] = 1.0
    assert "student.lrr" in ei.value.message and ei.value.status_name == "TCH_E_CONFIG"
    with pytest.raises(teacher.ConfigError):
        c["nn.hidden_dim"] = 0              # out of range
    with pytest.raises(teacher.ConfigError):
        c["student.loss"] = "nope"          # not a choice
    with pytest.raises(TypeError):
        c["nn.hidden_dim"] = 1.5
    with pytest.raises(teacher.ConfigError):
        c["unknown.key"]
    assert c.get("unknown.key", 42) == 42


def test_yaml_round_trip(tmp_path):
    c = teacher.Config({"seed": 3, "nn.hidden_dim": 48, "student.loss": "db",
                        "teacher.reward.C": 7.5, "buffer.enabled": True})
    path = tmp_path / "cfg.yaml"
    c.to_yaml(path)
    d = teacher.Config.from_yaml(path)
    assert d.to_dict() == c.to_dict()
    text = c.to_yaml()
    assert "hidden_dim: 48" in text
    assert teacher.Config.from_yaml_string(text).to_dict() == c.to_dict()
    e = c.copy()
    e["seed"] = 4
    assert c["seed"] == 3


def test_yaml_error_has_file_line_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 1\nstudent:\n  lr: 1.0e-3\n  lrr: 2\n")
    c = teacher.Config({"seed": 5})
    with pytest.raises(teacher.ConfigError) as ei:
        c.load_yaml(path)
    msg = ei.value.message
    assert "%s:4:3" % path in msg, msg
    assert "student.lrr" in msg
    assert c["seed"] == 5          # all or nothing
    with pytest.raises(teacher.ConfigError) as ei:
        teacher.Config.from_yaml_string("nn:\n  hidden_dim: [1, 2\n")
    assert re.match(r"<string>:\d+:\d+: ", ei.value.message), ei.value.message
