"""Shared fixtures.

Params for most specs are drawn with numpy in the layout ``models.MLP`` produces
(``Dense_i/{kernel,bias}``): every eager jax.random call or flax init compiles a
program per shape, which would dominate the suite's run time on a 2-core machine.
test_masks checks that this layout is the one flax produces.
"""

import numpy as np
import pytest

from experiments import xla_cpu

# The drivers switch XLA's CPU YNN fusions off before jax starts (experiments/xla_cpu.py); the
# tests run under the same switch, so a stored number in a test is the number a driver stores.
xla_cpu.speed_up_xla_cpu()


def draw_params(sizes, seed=0, std=0.1, bias_std=0.0, trials=None):
    """An MLP params dict for layer widths ``sizes`` (inputs first), float32 numpy leaves.

    Kernels follow the paper's init (N(0, std^2) resampled beyond 2 std); biases are
    N(0, bias_std^2) (0 by default, as in the paper). ``trials`` adds a leading trial axis.
    """
    rng = np.random.default_rng(seed)
    lead = () if trials is None else (trials,)

    def truncated(shape):
        x = rng.standard_normal(shape)
        while np.any(bad := np.abs(x) > 2):
            x[bad] = rng.standard_normal(int(bad.sum()))
        return (std * x).astype(np.float32)

    return {f"Dense_{i}": {"kernel": truncated(lead + (fan_in, fan_out)),
                           "bias": (bias_std * rng.standard_normal(lead + (fan_out,))).astype(np.float32)}
            for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))}


@pytest.fixture(scope="session")
def params_like():
    """The :func:`draw_params` factory."""
    return draw_params


@pytest.fixture(scope="session")
def lenet_params():
    """LeNet-300-100 (784-300-100-10, section 3.1) at the paper's init: 266,200 weights."""
    return draw_params([784, 300, 100, 10], seed=0)


def synthetic_mnist(train: int = 512, test: int = 256, seed: int = 0):
    """Learnable synthetic 'images' in MNIST's layout: the label is the argmax of a fixed linear
    map of the (binary) pixels. Returns ``((train_x, train_y), (test_x, test_y))`` on the device."""
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((784, 10)).astype(np.float32)

    def split(n):
        x = (rng.random((n, 784)) > 0.8).astype(np.float32)
        return jnp.asarray(x), jnp.asarray(np.argmax(x @ w, axis=1).astype(np.int32))

    return split(train), split(test)


@pytest.fixture(scope="session")
def synthetic_data():
    """:func:`synthetic_mnist` with 256 training and 128 test examples, shared by the tiny runs."""
    return synthetic_mnist(256, 128)


# The tiny iterative synthetic-MNIST runs of the instability specs (test_instability_runs, test_beyond):
# 784-16-8-10, 200 iterations, evaluations every 50, snapshots at steps 0 and 100, levels r00-r02
# (the chain stops under 70%), no controls trained; the pairs of a ticket and of its random-mask
# control at r00 and r02 (every second level), 5 points on each path.
INSTABILITY_TINY = dict(mode="iterative", hidden=(16, 8), iterations=200, eval_every=50, lr=0.2, seeds=(0, 1),
                        reinit=0, shuffle=0, random=0, min_remaining=70.0, average_over=50, stable_for=50,
                        snapshot_steps=(0, 100))
INSTABILITY_PAIRS = dict(roles=("ticket", "random"), alphas=5, every=2, chunk=50)


@pytest.fixture(scope="session")
def instability_root(tmp_path_factory, synthetic_data):
    """A root holding the runs of :data:`INSTABILITY_TINY` rewound to k = 0 and k = 100 and their
    instability analyses (:data:`INSTABILITY_PAIRS`), trained once for the session. Read it as it
    is; a test that adds to it or damages it works on a copy (``shutil.copytree``)."""
    from lth_jax.reproduction import instability_runs, mnist

    root = tmp_path_factory.mktemp("instability")
    analysis = instability_runs.Analysis(**INSTABILITY_PAIRS)
    for k in (0, 100):
        instability_runs.run(mnist.Settings(**INSTABILITY_TINY, rewind_step=k).lottery(), analysis, synthetic_data,
                             root)
    return root
