"""One place to change each thing: the schema's enums, the normalizer and the ONNX maps follow the
registries (runtime.primitives.ACTIVATIONS, runtime.train.optimizers.OPTIMIZERS, compiler.blocks.
BUILTINS, runtime.data.TASKS); the schema file on disk does not drift from them; an optimizer reads
exactly the settings it declares (betas / eps against torch.optim), and a setting it does not read
is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SPECS
from support import cli_in

import compiler
from compiler import Activation, SpecError, registries, schema
from runtime import Network, primitives
from runtime.train import optimizers
from runtime.train.config import Config
from schemas import SCHEMA_PATH

BASE = """\
timeloom: 1
name: reg
inputs: {x: {size: 2}}
units:
  h: {size: 3, activation: ACT}
connections:
  - {from: x, to: h}
  - {from: h, to: h, delay: 1}
outputs: {h: {loss: mse, at: all}}
"""


@pytest.fixture
def fresh_schema():
    """The schema and its validators rebuilt from the registries as they are now (and again after)."""
    schema.load_schema.cache_clear()
    schema._validator.cache_clear()
    yield
    schema.load_schema.cache_clear()
    schema._validator.cache_clear()


def spec(act="tanh", training=""):
    return BASE.replace("ACT", act) + (f"training: {{{training}}}\n" if training else "")


def test_the_schema_file_on_disk_matches_the_registries():
    on_disk = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert registries.drift(on_disk) == [], "update schemas/timeloom.schema.json as these lines say"
    assert registries.fill_schema(on_disk) == on_disk


def test_drift_is_reported_with_the_place_and_the_fix(monkeypatch):
    monkeypatch.setitem(optimizers.OPTIMIZERS, "lion", optimizers.SGD)
    lines = registries.drift(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    known = list(optimizers.OPTIMIZERS)[:-1]  # the registry before "lion" (sgd, adam, rmsprop, dekf)
    assert lines == [f"$defs/training/properties/optimizer/enum: {known} should be "
                     f"{known + ['lion']} (from the optimizers registry)"]


def test_every_builtin_block_has_its_schema_entry():
    s = schema.load_schema()
    conditional = [a["if"]["properties"]["type"].get("const") for a in s["$defs"]["block"]["allOf"]]
    for name in registries.blocks():
        assert name in conditional and f"{name}_block" in s["$defs"], name


def test_a_new_activation_is_one_registry_entry(monkeypatch, fresh_schema):
    """softsign x / (1 + |x|), added to the registry only: the schema takes it, the normalizer reads it,
    the runtime computes it (oracle: the closed form)."""
    kind = primitives.Kind(lambda xp, x, act, out=None: xp.divide(x, 1 + xp.abs(x), out=out),
                           lambda xp, a, da, act, out=None: xp.multiply(da, (1 - xp.abs(a)) ** 2, out=out))
    monkeypatch.setitem(primitives.ACTIVATIONS, "softsign", kind)
    with pytest.raises(SpecError, match="did you mean 'softsign'"):
        compiler.compile_spec(spec("softsighn"), file="reg.yaml")
    program = compiler.compile_spec(spec("softsign"), file="reg.yaml")
    assert program.units["h"].activation.name == "softsign"
    net = Network(program, dtype="float64", seed=0, jit=False)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    h = net.forward({"x": x}, units=["h"])["h"]
    W, U, b = (net.backend.to_numpy(net.params[k]) for k in ("x->h", "h->h@1", "h.bias"))
    prev = np.zeros((2, 3))
    for t in range(4):
        a = x[t] @ W.T + prev @ U.T + b
        prev = a / (1 + np.abs(a))
        np.testing.assert_allclose(h[t], prev, rtol=0, atol=1e-12)


def test_the_unknown_activation_message_lists_the_registry():
    from compiler.normalize import NormalizeError, activation
    with pytest.raises(NormalizeError) as e:
        activation("swish")
    names = [n for n, a in primitives.ACTIVATIONS.items() if not a.args]
    assert all(n in str(e.value) for n in names) and "{scaled_sigmoid: [lo, hi]}" in str(e.value)
    assert activation({"scaled_sigmoid": [-2, 2]}) == Activation("scaled_sigmoid", -2.0, 2.0)


def test_the_onnx_maps_are_the_registrys():
    from interop import activations as slot_functions
    from interop.onnx_import import ACTIVATION_OPS
    want = {a.onnx: n for n, a in primitives.ACTIVATIONS.items() if a.onnx}
    assert ACTIVATION_OPS == want
    # HardSigmoid takes alpha, beta in a recurrent slot: mapped with a scale and offset, not as PLAIN
    assert slot_functions.PLAIN == {op: n for op, n in want.items()
                                    if op in slot_functions.RNN_FUNCTIONS and op != "HardSigmoid"}
    assert slot_functions.onnx_from_timeloom(Activation("hard_sigmoid")) == ("HardSigmoid", 0.2, 0.5)
    slot = slot_functions.slot_from_onnx("HardSigmoid", 0.4, 0.5, "here")
    assert (slot.activation, slot.scale, slot.offset) == ("hard_sigmoid", 2.0, 0.0)  # clip(0.4 x + 0.5, 0, 1)
    for op, name in slot_functions.PLAIN.items():
        assert slot_functions.onnx_from_timeloom(Activation(name)) == (op, None, None)
        assert slot_functions.slot_from_onnx(op, None, None, "here").activation == name
    assert "Softmax" not in slot_functions.PLAIN  # not an ONNX recurrent slot function


# -- optimizers ------------------------------------------------------------------------------------
def test_defaults_come_from_the_optimizer_classes():
    for name, cls in optimizers.OPTIMIZERS.items():
        cfg = Config.from_training({"optimizer": name})
        assert cfg.lr == cls.default_lr
        if not issubclass(cls, optimizers.Optimizer):  # dekf: built on the network by the trainer
            continue
        opt = optimizers.make_optimizer(name, np, ["w"], **cfg.optimizer_options())
        assert opt.hyper == cls.settings
    assert Config.from_training({}).optimizer == optimizers.DEFAULT_OPTIMIZER == "adam"


@pytest.mark.parametrize("training,torch_kw", [
    ("optimizer: adam, betas: [0.5, 0.9], eps: 0.01", {"betas": (0.5, 0.9), "eps": 0.01}),
    ("optimizer: adam, betas: [0.0, 0.5], eps: 1.0e-3, weight_decay: 0.1",
     {"betas": (0.0, 0.5), "eps": 1e-3, "weight_decay": 0.1}),
    ("optimizer: rmsprop, eps: 0.1, momentum: 0.5", {"eps": 0.1, "momentum": 0.5}),
])
def test_settings_from_a_spec_reach_the_optimizer_as_torch_reads_them(training, torch_kw):
    torch = pytest.importorskip("torch")
    program = compiler.compile_spec(spec(training=training + ", lr: 0.05"), file="reg.yaml")
    cfg = Config.from_training(program.training)
    rng = np.random.default_rng(0)
    M = rng.standard_normal((4, 4))
    A, c, p0 = M @ M.T + np.eye(4), rng.standard_normal(4), rng.standard_normal(4)
    params = {"w": p0.copy()}
    opt = optimizers.make_optimizer(cfg.optimizer, np, ["w"], **cfg.optimizer_options())
    tw = torch.tensor(p0, requires_grad=True)
    topt = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[cfg.optimizer]([tw], lr=cfg.lr, **torch_kw)
    for _ in range(12):
        opt.step(params, {"w": A @ params["w"] - c}, cfg.lr)
        topt.zero_grad()
        (0.5 * tw @ torch.tensor(A) @ tw - torch.tensor(c) @ tw).backward()
        topt.step()
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    plain = optimizers.make_optimizer(cfg.optimizer, np, ["w"])
    q = {"w": p0.copy()}
    for _ in range(12):
        plain.step(q, {"w": A @ q["w"] - c}, cfg.lr)
    assert not np.allclose(q["w"], params["w"])  # the settings changed the steps


@pytest.mark.parametrize("training,key,readers", [
    ("optimizer: adam, momentum: 0.9", "momentum", "sgd, rmsprop"),
    ("momentum: 0.9", "momentum", "sgd, rmsprop"),  # adam by default
    ("optimizer: sgd, betas: [0.9, 0.99]", "betas", "adam"),
    ("optimizer: sgd, eps: 1.0e-6", "eps", "adam, rmsprop"),
    ("optimizer: rmsprop, betas: [0.9, 0.99]", "betas", "adam"),
])
def test_a_setting_the_optimizer_does_not_read_is_refused(tmp_path, training, key, readers):
    (tmp_path / "s.yaml").write_text(spec(training=training))
    result = cli_in(tmp_path, ["compile", "s.yaml"])
    assert result.exit_code == 2, result.output
    line = spec(training=training).splitlines()[9]
    assert f"s.yaml:10:{line.index(key + ':') + 1}: error: training.{key} is not read by optimizer" in result.output
    assert f"use an optimizer that reads it: {readers}" in result.output
    assert "Traceback" not in result.output


def test_out_of_range_betas_and_eps_are_refused():
    for training, words in [("betas: [0.9, 1.0]", "training/betas/1 must be < 1"),
                            ("betas: [0.9]", "training/betas"), ("eps: 0", "training/eps must be > 0")]:
        with pytest.raises(SpecError, match=words):
            compiler.compile_spec(spec(training=training), file="reg.yaml")


def test_a_new_optimizer_is_one_class_and_one_registry_entry(monkeypatch, fresh_schema):
    class SignSGD(optimizers.Optimizer):
        """p <- p - lr * sign(g)."""
        default_lr = 0.05
        settings = {"weight_decay": 0.0}

        def update(self, name, p, g, lr):
            return p - lr * self.xp.sign(g)

    monkeypatch.setitem(optimizers.OPTIMIZERS, "signsgd", SignSGD)
    program = compiler.compile_spec(spec(training="optimizer: signsgd"), file="reg.yaml")
    cfg = Config.from_training(program.training)
    assert (cfg.optimizer, cfg.lr) == ("signsgd", 0.05)
    opt = optimizers.make_optimizer(cfg.optimizer, np, ["w"], **cfg.optimizer_options())
    p = {"w": np.array([1.0, -2.0, 0.5])}
    opt.step(p, {"w": np.array([3.0, -0.1, 0.0])}, cfg.lr)
    np.testing.assert_array_equal(p["w"], [0.95, -1.95, 0.5])
    with pytest.raises(SpecError, match="training.momentum is not read by optimizer signsgd"):
        compiler.compile_spec(spec(training="optimizer: signsgd, momentum: 0.5"), file="reg.yaml")


def test_every_bundled_spec_sets_only_what_its_optimizer_reads():
    from compiler.loader import load_file
    for path in SPECS:
        data, positions = load_file(path)
        assert registries.training_issues(data, positions) == [], path.name
        cfg = Config.from_training(compiler.compile_spec(path).training)
        if cfg.optimizer == "dekf":  # no gradient step: the Kalman filter is tested in tests/runtime/test_dekf.py
            continue
        opt = optimizers.make_optimizer(cfg.optimizer, np, ["w"], **cfg.optimizer_options())
        p = {"w": np.ones(2)}
        opt.step(p, {"w": np.array([1.0, -1.0])}, cfg.lr)
        assert np.all(np.isfinite(p["w"])) and not np.array_equal(p["w"], np.ones(2)), path.name
