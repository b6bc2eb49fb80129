"""The adding problem (T = 100) trained with torch.nn.RNN / nn.LSTM: the independent check of
what specs/adding_elman.yaml and specs/adding_lstm.yaml reach with timeloom.

    python benchmarks/adding_torch.py                     # rnn and lstm, seed 0, the specs' epochs
    python benchmarks/adding_torch.py --cell rnn --seeds 3 --epochs 40

The same setting as the specs: 32 hidden units (tanh for the RNN), a linear readout of the
last step, mse, RMSprop lr 1e-3, gradient norm clipped at 1, batches of 32, 100 steps per
epoch, fresh sequences from timeloom's own generator (runtime.data.adding), torch's default
initialisation. Test mse on 1000 fixed sequences, printed every 10 epochs and at the end,
beside the trivial baseline Var(u1 + u2) = 1/6 and the one-number plateau Var(u1) = 1/12 (a
net that adds only the value it can still reach, the one in the second half, and guesses the
mean 0.5 for the other).
"""
from __future__ import annotations

import argparse
import sys
import time

import common  # noqa: F401  (puts the repo root on sys.path)
import numpy as np

from runtime.data.adding import adding_sequences

SPEC_EPOCHS = {"rnn": 50, "lstm": 80}  # specs/adding_elman.yaml, specs/adding_lstm.yaml


def train(cell: str, epochs: int, seed: int, length: int = 100, hidden: int = 32, log=print) -> list[tuple]:
    import torch

    torch.manual_seed(seed)
    rec = (torch.nn.RNN if cell == "rnn" else torch.nn.LSTM)(2, hidden)
    readout = torch.nn.Linear(hidden, 1)
    params = list(rec.parameters()) + list(readout.parameters())
    opt = torch.optim.RMSprop(params, lr=1e-3)
    rng = np.random.default_rng(seed)
    xt, yt = (torch.from_numpy(a) for a in adding_sequences(1000, length, np.random.default_rng(10_000 + seed)))

    def predict(x):
        out, _ = rec(x)
        return readout(out[-1])

    curve = []
    for epoch in range(1, epochs + 1):
        for _ in range(100):
            x, y = (torch.from_numpy(a) for a in adding_sequences(32, length, rng))
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(predict(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        with torch.no_grad():
            mse = float(torch.nn.functional.mse_loss(predict(xt), yt))
        curve.append((epoch, mse))
        if epoch % 10 == 0 or epoch == epochs:
            log(f"  {cell} seed {seed} epoch {epoch:3d}: test mse {mse:.4f}")
    return curve


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="all", choices=["rnn", "lstm", "all"])
    ap.add_argument("--epochs", type=int, default=None, help="default: the spec's (rnn 50, lstm 80)")
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("needs torch: pip install -e '.[test]'")
        return 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; baseline 1/6 = 0.167, "
          f"one-number plateau 1/12 = 0.083, solved: < 0.01")
    for cell in (["rnn", "lstm"] if args.cell == "all" else [args.cell]):
        finals = []
        for seed in range(args.seeds):
            t0 = time.monotonic()
            curve = train(cell, args.epochs or SPEC_EPOCHS[cell], seed)
            finals.append(curve[-1][1])
            print(f"  {cell} seed {seed}: final test mse {curve[-1][1]:.4f}, best {min(m for _, m in curve):.4f} "
                  f"({time.monotonic() - t0:.0f} s)")
        print(f"torch nn.{cell.upper()}: final test mse per seed " + ", ".join(f"{m:.4f}" for m in finals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
