import json

import pytest

import superposition as sp
from superposition.config import ConfigError


def test_json_round_trip_preserves_every_field():
    cfg = sp.RunConfig(
        model=sp.ModelConfig("relu_hidden", 10, 5),
        data=sp.DataConfig(feature_probability=(1.0, (0.5,) * 10), importance=tuple(0.75**i for i in range(10)),
                           distribution="correlated", set_size=5, signed=True),
        train=sp.TrainConfig(steps=7, optimizer="adam", schedule="cosine", warmup_steps=2, restarts=3,
                             snapshot_every=2),
        name="x",
    )
    again = sp.RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == json.loads(cfg.to_json())


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: sp.DataConfig(feature_probability=(0.0,)), "data.feature_probability[0]"),
        (lambda: sp.DataConfig(feature_probability=(1.5,)), "data.feature_probability[0]"),
        (lambda: sp.DataConfig(feature_probability=(-0.1,)), "data.feature_probability[0]"),
        (lambda: sp.DataConfig(feature_probability=(float("nan"),)), "data.feature_probability[0]"),
        (lambda: sp.DataConfig(feature_probability=()), "data.feature_probability"),
        (lambda: sp.ModelConfig(n_features=0), "model.n_features"),
        (lambda: sp.ModelConfig(n_hidden=0), "model.n_hidden"),
        (lambda: sp.ModelConfig(kind="transformer"), "model.kind"),
        (lambda: sp.TrainConfig(steps=0), "train.steps"),
        (lambda: sp.TrainConfig(batch_size=0), "train.batch_size"),
        (lambda: sp.TrainConfig(lr=0), "train.lr"),
        (lambda: sp.TrainConfig(restarts=0), "train.restarts"),
        (lambda: sp.TrainConfig(optimizer="sdg"), "train.optimizer"),
        (lambda: sp.TrainConfig(betas=(0.9, 1.0)), "train.betas[1]"),
        (lambda: sp.DataConfig(distribution="correlated"), "data.set_size"),
        (lambda: sp.RunConfig(model=sp.ModelConfig(n_features=5), data=sp.DataConfig(importance=(1.0, 2.0))),
         "data.importance"),
        (lambda: sp.RunConfig(model=sp.ModelConfig(n_features=5),
                              data=sp.DataConfig(distribution="correlated", set_size=2)), "data.set_size"),
        (lambda: sp.DataConfig(feature_probability=(1.0, 0.5), importance=((1.0, 1.0),)), "data.importance"),
        (lambda: sp.DataConfig(feature_probability=(1.0, 0.5), importance=((1.0, 1.0), 2.0)), "data.importance"),
        (lambda: sp.DataConfig(feature_probability=(1.0,), importance=((1.0, -1.0),)), "data.importance[0][1]"),
        (lambda: sp.RunConfig(model=sp.ModelConfig(n_features=3),
                              data=sp.DataConfig(feature_probability=(1.0,), importance=((1.0, 1.0),))),
         "data.importance"),
    ],
)
def test_bad_values_name_the_field(build, field):
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(field)


def test_unknown_keys_are_refused():
    raw = sp.RunConfig().to_dict()
    raw["train"]["stpes"] = 3
    with pytest.raises(ConfigError, match="stpes"):
        sp.RunConfig.from_dict(raw)


def test_instances_are_configs_times_restarts():
    cfg = sp.RunConfig(data=sp.DataConfig(feature_probability=(1.0, 0.5, 0.1)), train=sp.TrainConfig(restarts=4))
    assert cfg.n_instances == 12
    assert sp.TrainConfig().resolved_weight_decay == 0.01
    assert sp.TrainConfig(optimizer="adam").resolved_weight_decay == 0.0


def test_importance_per_configuration():
    data = sp.DataConfig(feature_probability=(1.0, 0.1), importance=[[1.0, 0.5], [1.0, 3.0]])
    cfg = sp.RunConfig(model=sp.ModelConfig(n_features=2, n_hidden=1), data=data, train=sp.TrainConfig(restarts=2))
    assert data.per_config_importance and not sp.DataConfig(importance=(1.0,)).per_config_importance
    assert sp.RunConfig.from_json(cfg.to_json()) == cfg
    from superposition.data import feature_spec

    spec = feature_spec(cfg)
    assert spec.importance.tolist() == [[1.0, 0.5], [1.0, 0.5], [1.0, 3.0], [1.0, 3.0]]
