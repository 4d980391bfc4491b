"""The logged generator where people use it: MLflow's pyfunc (in a process where gan_ray cannot be
imported), its input checks (a 400-class error naming the shape), the model card on the registered
version, and ONNX export run in onnxruntime. Freshly built tiny generators, a real SQLite store.

The scoring server itself is queried on a real sweep's champion in tests/ray/test_sweep.py.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys

import mlflow.pyfunc
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import validate_serving_input

from gan_ray.cli import main
from gan_ray.config import validate_config
from gan_ray.errors import MissingExtraError
from gan_ray.noise import get_noise
from gan_ray.sampling import load_generator
from gan_ray.tracking import card, contract
from gan_ray.tracking.model import PYFUNC_CODE, download_model, log_generator
from gan_ray.tracking.registry import register_champion, scoring_tags
from gan_ray.tracking.store import make_client
from gan_ray.training.networks import build_generator

RING8 = {"name": "ring8-serving", "model": {"hidden_dim": 16, "hidden_layers": 1}}
DIGITS = {
    "name": "digits-serving",
    "data": {"name": "digits"},
    "model": {"g_filters": 8, "d_filters": 8},
    "noise": {"dim": 16, "distribution": "uniform"},
}
SEARCHED = {"optim.lr_g": 0.002, "loss.name": "rpgan"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Tiny models (see conftest.one_thread)."""


def _log(store, raw: dict, name: str):
    """A freshly built generator of ``raw``, logged to a new run and registered as ``name``'s champion."""
    cfg = validate_config(raw)
    torch.manual_seed(0)
    generator = build_generator(cfg).eval()
    client = make_client(store)
    run = client.create_run(client.create_experiment(name))
    uri = log_generator(generator, cfg, run.info.run_id, store)
    scoring = scoring_tags(cfg.data.name, 20000)
    register_champion(
        uri,
        name,
        "mode_distance",
        0.25,
        "min",
        run.info.run_id,
        cfg,
        store,
        scoring=scoring,
        searched=SEARCHED,
    )
    return cfg, f"models:/{name}@champion"


@pytest.fixture(scope="module")
def ring8(store):
    return _log(store, RING8, "serving-ring8")


@pytest.fixture(scope="module")
def ring8_local(store, ring8, tmp_path_factory):
    return download_model(ring8[1], tmp_path_factory.mktemp("ring8-model"), store)


def test_the_served_code_imports_only_numpy_torch_and_mlflow():
    """MLflow runs pyfunc_generator.py where gan_ray need not be installed; its two names must be the
    contract's (it cannot import them)."""
    tree = ast.parse(PYFUNC_CODE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {m.split(".")[0] for m in imported} <= {"__future__", "typing", "numpy", "torch", "mlflow"}
    constants = {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    }
    assert constants["NOISE"] == contract.NOISE and constants["PROGRAM"] == contract.PROGRAM


PYFUNC_USER = """
import sys
sys.modules["gan_ray"] = None  # as if gan_ray were not installed: any import of it fails
import json, mlflow, numpy as np
from mlflow.models import validate_serving_input
noise = np.load("noise.npy")
model = mlflow.pyfunc.load_model(sys.argv[1])
np.save("pyfunc.npy", model.predict(noise))
np.save("pyfunc_one.npy", model.predict({"noise": noise[:1]}))
example = open(sys.argv[2]).read()
print(json.dumps({"example": validate_serving_input(sys.argv[1], example).shape,
                  "gan_ray": [m for m, v in sys.modules.items() if m.startswith("gan_ray") and v]}))
"""


def _without_gan_ray(tmp_path, store, script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter, in ``tmp_path``, without the checkout on its path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MLFLOW_TRACKING_URI=store, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    (tmp_path / "user.py").write_text(script)
    done = subprocess.run(
        [sys.executable, "user.py", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_pyfunc_without_gan_ray_gives_what_gan_ray_samples(store, ring8, ring8_local, tmp_path):
    cfg, uri = ring8
    noise = contract.example_noise(cfg, 300)
    np.save(tmp_path / "noise.npy", noise)
    example = ring8_local / "serving_input_example.json"
    done = _without_gan_ray(tmp_path, store, PYFUNC_USER, uri, str(example))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"example": [contract.EXAMPLE_BATCH, 2], "gan_ray": []}
    served, one = np.load(tmp_path / "pyfunc.npy"), np.load(tmp_path / "pyfunc_one.npy")
    assert served.shape == (300, 2) and served.dtype == np.float32 and one.shape == (1, 2)
    with torch.no_grad():
        expected = load_generator(uri, tracking_uri=store).module(torch.from_numpy(noise)).numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one, expected[:1], rtol=1e-5, atol=1e-6)
    # The example is the forward-compatible form: the named tensor, as a conditional model will extend it.
    assert list(json.loads(example.read_text())["inputs"]) == ["noise"]
    assert validate_serving_input(str(ring8_local), example.read_text()).shape == (contract.EXAMPLE_BATCH, 2)


def _predict(model, noise):
    with pytest.raises(MlflowException) as caught:
        model.predict(noise)
    return caught.value


@pytest.mark.slow
@pytest.mark.parametrize(
    ("noise", "says"),
    [
        (np.zeros((3, 7), np.float32), r"expected shape \(-1, 8\)"),  # MLflow's schema check
        (np.zeros(8, np.float32), r"expected shape \(-1, 8\)"),
        (np.zeros((0, 8), np.float32), r"shape \(n, 8\).*empty batch"),
        (np.full((3, 8), np.nan, np.float32), r"shape \(n, 8\).*NaN or infinite values in rows \[0, 1, 2\]"),
        (np.float32([[0] * 8, [np.inf] + [0] * 7]), r"shape \(n, 8\).*rows \[1\]"),
        (np.zeros((9, 8), np.float32), r"shape \(n, 8\) with 1 <= n <= 8; got n = 9"),
    ],
)
def test_bad_noise_is_refused_naming_the_expected_shape(ring8_local, noise, says):
    """Each is an INVALID_PARAMETER_VALUE error, which the scoring server answers with 400 (the batch
    limit lowered here by MLflow's load-time ``model_config`` override, as an operator may)."""
    model = mlflow.pyfunc.load_model(str(ring8_local), model_config={"max_batch": 8})
    error = _predict(model, noise)
    assert error.error_code == "INVALID_PARAMETER_VALUE" and error.get_http_status_code() == 400
    assert re.search(says, error.message), error.message
    assert model.predict(np.zeros((8, 8), np.float32)).shape == (8, 2)


def test_max_batch_keeps_a_request_to_about_a_quarter_million_numbers():
    assert contract.max_batch(8, (2,)) == 32768
    assert contract.max_batch(100, (1, 28, 28)) == 256
    assert contract.max_batch(128, (3, 64, 64)) == 16
    assert contract.max_batch(8, (3, 1024, 1024)) == 1


@pytest.mark.slow
def test_the_registered_version_carries_a_model_card(store, ring8, tmp_path):
    cfg, uri = ring8
    version = make_client(store).get_model_version_by_alias("serving-ring8", "champion")
    text = version.description
    assert text.startswith("mode_distance = 0.25 (min; dataset ring8")
    for heading in ("### Score", "### Training", "### Using it"):
        assert heading in text
    assert "on 20,000 generated samples" in text and "lower is better" in text
    assert f"{cfg.train.steps:,} G-steps, each after 1 D-step(s), batch {cfg.train.batch_size} x 1" in text
    assert "| `optim.lr_g` | `0.002` |" in text and "| `loss.name` | `rpgan` |" in text
    assert "float32 of shape (n, 8), 1 <= n <= 32,768" in text and "(n, 2)" in text
    # The card's three-line pyfunc example runs as written, where gan_ray is not importable.
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(code.strip().splitlines()) == 3 and f"models:/serving-ring8/{version.version}" in code
    script = 'import sys\nsys.modules["gan_ray"] = None\n' + code + "print(samples.shape)\n"
    assert _without_gan_ray(tmp_path, store, script).stdout.strip() == "(16, 2)"
    (shell,) = re.findall(r"```bash\n(.*?)```", text, re.S)
    body = re.search(r"-d '(.*)'", shell).group(1)
    assert np.array(json.loads(body)["inputs"]["noise"]).shape == (2, 8)


@pytest.mark.slow
def test_export_onnx_runs_in_onnxruntime_as_in_torch(store, tmp_path, capsys):
    """A DCGAN generator (transposed convolutions, BatchNorm on running statistics), batch dynamic."""
    ort = pytest.importorskip("onnxruntime")
    cfg, uri = _log(store, DIGITS, "serving-digits")
    out = tmp_path / "g.onnx"
    assert main(["export", uri, "--onnx", str(out), "--tracking-uri", store]) == 0
    assert capsys.readouterr().out.strip() == f"onnx: {out}"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.name == "noise" and isinstance(given.shape[0], str) and given.shape[1] == 16
    module = load_generator(uri, tracking_uri=store).module
    for n in (1, 7):
        noise = contract.example_noise(cfg, n)
        (samples,) = session.run(None, {"noise": noise})
        with torch.no_grad():
            expected = module(torch.from_numpy(noise)).numpy()
        assert samples.shape == (n, 1, 8, 8)
        np.testing.assert_allclose(samples, expected, rtol=1e-4, atol=1e-5)


def test_export_without_the_onnx_extra_is_one_clear_line(monkeypatch, tmp_path, capsys):
    from gan_ray import onnx_export as export_module

    monkeypatch.setattr(export_module, "ONNX_PACKAGES", ("onnx", "no_such_onnx_package"))
    assert main(["export", str(tmp_path / "nothing"), "--onnx", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err
    assert "no_such_onnx_package" in err and "gan-ray[onnx]" in err and not (tmp_path / "g.onnx").exists()
    with pytest.raises(MissingExtraError):
        export_module.check_onnx_available()


@pytest.mark.parametrize("name", sorted(card.NUMPY_NOISE))
def test_the_cards_numpy_noise_is_gan_rays_distribution(name):
    """The card's one-line noise (for users without gan_ray) draws what G was trained on: same
    moments, norms and bounds as gan_ray's sampler, float32."""
    import scipy.stats  # the truncated normal's line uses it

    z = eval(card.NUMPY_NOISE[name].format(n=20000, d=8), {"np": np, "scipy": scipy})
    ref = get_noise(name)(20000, 8, generator=torch.Generator().manual_seed(1)).numpy()
    assert z.dtype == np.float32 and z.shape == (20000, 8)
    assert np.abs(z).max() == pytest.approx(np.abs(ref).max(), rel=0.25)
    for stat in (np.mean, np.std, lambda a: np.linalg.norm(a, axis=1).mean()):
        assert stat(z) == pytest.approx(stat(ref), abs=0.03)
