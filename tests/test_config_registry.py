"""Typed configs refuse unknown keys and bad values; registries check what they register."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from torch import nn

from padrec.config import ConfigError, from_dict, load_yaml, set_dotted, to_dict
from padrec.registry import Registry


@dataclass
class Inner:
    size: int = 4
    kind: Literal["a", "b"] = "a"


@dataclass
class Outer:
    name: str = "x"
    rate: float = 0.1
    flags: list[int] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    maybe: int | None = None


def test_from_dict_builds_nested_and_coerces():
    cfg = from_dict(Outer, {"rate": 1, "flags": [1, "2"], "inner": {"size": "8", "kind": "b"}, "maybe": None})
    assert cfg.rate == 1.0 and cfg.flags == [1, 2] and cfg.inner.size == 8 and cfg.inner.kind == "b"
    assert to_dict(cfg)["inner"] == {"size": 8, "kind": "b"}


def test_unknown_key_is_an_error_naming_the_dotted_key():
    with pytest.raises(ConfigError, match="inner.sise"):
        from_dict(Outer, {"inner": {"sise": 3}})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"rate": "fast"}, "rate"),
        ({"inner": {"kind": "c"}}, "inner.kind"),
        ({"flags": "1,2"}, "flags"),
        ({"inner": {"size": True}}, "inner.size"),
    ],
)
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(Outer, data)


def test_yaml_and_dotted_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\ninner:\n  size: 2\n")
    data = load_yaml(p)
    set_dotted(data, "inner.kind", "b")
    assert from_dict(Outer, data).inner.kind == "b"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_yaml(tmp_path / "missing.yaml")


def test_registry_checks_registration_and_builds():
    reg = Registry("widget", nn.Module)

    @dataclass
    class WCfg:
        width: int = 3

    @reg.register("w")
    class W(nn.Module):
        config_class = WCfg

        def __init__(self, config):
            super().__init__()
            self.config = config

    assert reg.build("w", {"width": 5}).config.width == 5
    assert reg.build("w").config.width == 3
    with pytest.raises(ConfigError):
        reg.build("w", {"wdth": 5})
    with pytest.raises(KeyError, match="known: w"):
        reg.get("nope")
    with pytest.raises(TypeError):
        reg.register("not-a-module")(int)

    class NoCfg(nn.Module):
        pass

    with pytest.raises(TypeError, match="config_class"):
        reg.register("nocfg")(NoCfg)

    @reg.register("w2")
    class W2(W):
        pass

    with pytest.raises(ValueError, match="already registered"):
        reg.register("w")(W2)


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_is_valid(path: Path) -> None:
    """Each file in configs/ passes the same checks as ``padrec train -c`` (the experiment
    config, the method config and the backbone config with its registered class)."""
    from padrec.commands.train import build_config_dict
    from padrec.experiment import load_experiment_config
    from padrec.models.backbones import BACKBONES

    cfg = load_experiment_config(build_config_dict(path, {}, []))
    mc = cfg.method_config
    backbone = BACKBONES.get(mc.get("backbone", "sasrec"))
    from_dict(
        backbone.config_class,
        {"hidden_size": 8, "max_len": 4, **mc.get("backbone_config", {})},
        where=f"{path.name}: method_config.backbone_config",
    )


def test_every_shipped_config_loads():
    """Each configs/*.yaml is a valid experiment config (typos in a shipped config fail here)."""
    from pathlib import Path

    from padrec.experiment.config import load_experiment_config

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) > 20
    for path in configs:
        cfg = load_experiment_config(load_yaml(path))
        assert cfg.name, path
    pad = load_experiment_config(load_yaml(configs[0].parent / "pad.yaml"))
    assert pad.phase_train["align"] == {"epochs": 4, "schedule": "cosine"}
    assert pad.text["encoder_config"] == {"dtype": "auto"}
