"""A small GAN on a 2-D mixture of 8 Gaussians arranged on a circle.

    python examples/gan_mixture.py [--steps 3000] [--out out]

The generator maps 2-D normal noise to points; the discriminator scores real against
generated points. Each side is its own compiled training step (forward, backward and
Adam update in one call) whose loss reads the other side's current parameters as
inputs. The noise is drawn inside the graph by the counter-based random op
(``sg.nn.random_normal`` with a step counter kept as state), so a run repeats exactly.
OUT/gan_mixture.png shows real and generated samples.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import output_dir, parser, pyplot  # noqa: E402

import symgrad as sg  # noqa: E402

MODES = 8
RADIUS = 2.0
STD = 0.05


def centers() -> np.ndarray:
    a = 2 * np.pi * np.arange(MODES) / MODES
    return np.stack([RADIUS * np.cos(a), RADIUS * np.sin(a)], 1)


def real_samples(n: int, rng: np.random.Generator) -> np.ndarray:
    c = centers()[rng.integers(0, MODES, n)]
    return (c + STD * rng.standard_normal((n, 2))).astype(np.float32)


def build(hidden: int = 64) -> tuple[sg.nn.Sequential, sg.nn.Sequential]:
    gen = sg.nn.Sequential([sg.nn.Dense(2, hidden, "relu"), sg.nn.Dense(hidden, hidden, "relu"),
                            sg.nn.Dense(hidden, 2)], name="gen")
    disc = sg.nn.Sequential([sg.nn.Dense(2, hidden, "leaky_relu"), sg.nn.Dense(hidden, hidden, "leaky_relu"),
                             sg.nn.Dense(hidden, 1)], name="disc")
    return gen, disc


def quality(samples: np.ndarray) -> tuple[int, float]:
    """(modes that received at least 2% of the samples, fraction within 4 std of a mode)."""
    d = np.linalg.norm(samples[:, None, :] - centers()[None], axis=-1)
    near = d.min(1) < 4 * STD
    counts = np.bincount(d.argmin(1)[near], minlength=MODES)
    return int((counts >= 0.02 * len(samples)).sum()), float(near.mean())


def train_gan(steps: int = 3000, backend: str = "numpy", progress: bool = True, *, batch: int = 128,
              hidden: int = 64, seed: int = 0) -> tuple[dict[str, np.ndarray], list[tuple[float, float]], np.ndarray]:
    """Train; return (generator parameters, [(d_loss, g_loss)] per step, 2000 samples)."""
    gen, disc = build(hidden)
    x = sg.placeholder("x", (batch, 2))
    counter = sg.placeholder("gan.counter", (), "int64")
    z_d = sg.nn.random_normal((batch, 2), seed * 2 + 1, counter)
    z_g = sg.nn.random_normal((batch, 2), seed * 2 + 2, counter)
    bce = sg.nn.binary_cross_entropy_with_logits
    ones, zeros = sg.ones((batch, 1)), sg.zeros((batch, 1))
    d_loss = bce(disc(x), ones) + bce(disc(gen(z_d)), zeros)
    g_loss = bce(disc(gen(z_g)), ones)  # the non-saturating generator loss
    init = sg.nn.merge(gen.init(seed), disc.init(seed))
    bump = {"gan.counter": counter + 1}
    d_step = sg.optim.TrainStep(d_loss, {k: init[k] for k in disc.params}, sg.optim.Adam(1e-3, betas=(0.5, 0.999)),
                                buffers={"gan.counter": np.int64(0)}, updates=bump, backend=backend)
    g_step = sg.optim.TrainStep(g_loss, {k: init[k] for k in gen.params}, sg.optim.Adam(1e-3, betas=(0.5, 0.999)),
                                buffers={"gan.counter": np.int64(0)}, updates=bump, backend=backend)
    rng = np.random.default_rng(seed)
    losses = []
    bar = sg.train.progress_bar(steps * batch, progress, "GAN")
    for k in range(steps):
        ld = d_step(x=real_samples(batch, rng), **g_step.params)
        lg = g_step(**d_step.params)
        if not (d_step.last_finite and g_step.last_finite):
            raise FloatingPointError(f"the GAN diverged at step {k}")
        losses.append((ld, lg))
        if bar is not None:
            bar.update(batch)
            if k % 50 == 0:
                bar.set_postfix(d=f"{ld:.3f}", g=f"{lg:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    z = sg.placeholder("z", (None, 2))
    sample = sg.compile(gen(z), [z, *gen.params.values()], backend=backend)
    params = g_step.params
    samples = sample(np.random.default_rng(seed + 99).standard_normal((2000, 2)).astype(np.float32),
                     *[params[k] for k in gen.params])
    return params, losses, samples


def plot(losses: list[tuple[float, float]], samples: np.ndarray, path: str) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5))
    real = real_samples(2000, np.random.default_rng(1))
    b.scatter(real[:, 0], real[:, 1], s=2, alpha=0.4, label="real")
    b.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="generated")
    b.set_aspect("equal")
    b.legend(markerscale=5)
    modes, frac = quality(samples)
    b.set_title(f"{modes}/{MODES} modes covered, {frac:.0%} near a mode")
    arr = np.array(losses)
    a.plot(arr[:, 0], lw=0.5, label="discriminator")
    a.plot(arr[:, 1], lw=0.5, label="generator")
    a.set_xlabel("step")
    a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> tuple[int, float]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    args = p.parse_args(argv)
    _, losses, samples = train_gan(args.steps, args.backend, not args.no_progress)
    path = os.path.join(output_dir(args.out), "gan_mixture.png")
    plot(losses, samples, path)
    modes, frac = quality(samples)
    print(f"{modes}/{MODES} modes covered, {frac:.0%} of the samples near a mode; plot: {path}")
    return modes, frac


if __name__ == "__main__":
    main()
