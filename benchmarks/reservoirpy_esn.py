"""timeloom's echo-state network (specs/esn.yaml) next to ReservoirPy's, on the same data.

    pip install reservoirpy          # benchmark-only dependency, NOT a timeloom dependency
    python benchmarks/reservoirpy_esn.py [--seeds 5] [--spec specs/esn.yaml] [--json]

Both ESNs get the hyper-parameters of the spec: 500 tanh units, no leak (lr = 1), spectral
radius 0.9, recurrent density 0.1 (normal entries), dense input weights uniform in
[-input_scaling, input_scaling], no reservoir bias, ridge alpha and washout of the spec's
`training.ridge`, and the readout y = V h_t + c fitted in closed form.

Identical data: the Mackey-Glass series is taken from timeloom's task generator
(`runtime.data.make_task(program, seed=S).series`), so both see the same numbers. The
protocol is timeloom's (`MackeyGlass`): train on the first n_train steps as one sequence from
a zero state (targets x(t + 1)), drop `washout` steps, fit; evaluate on the held-out part as
one sequence from a zero state after `warmup` (100) steps of context that do not count;
NRMSE = RMSE / std of the held-out targets (`runtime.data.metrics.nrmse`, for both).

Prints the one-step NRMSE of both per seed (seed S: timeloom's network seed and data seed,
ReservoirPy's `seed=S`; the two draw different random reservoirs from the same
distribution, so compare the medians), and timeloom's free-running 84-step NRMSE
(`MackeyGlass.free_run`: outputs fed back as inputs, from 10 starting points in the held-out
part) together with ReservoirPy's under the same protocol. Computation: timeloom float32
(its default), ReservoirPy float64 (its default).

    python benchmarks/reservoirpy_esn.py --jaeger [--seeds 3] [--alpha 1e-10] [--json]

runs the Jaeger & Haas 2004 protocol of specs/esn_jaeger2004.yaml instead: the series
squashed to tanh(x - 1) from timeloom's generator, a ReservoirPy reservoir of the spec's
size, spectral radius and density whose input is [bias_input, y(t-1)] with dense input
weights uniform in [-1, 1] (output feedback is a delayed input, so this is the same network
as `y -> res, delay 1`), teacher-forced on the training part, a ReservoirPy Ridge readout
fitted to atanh of the targets (tanh output unit) after the washout, then free runs of
`free_run_steps` from timeloom's `free_run_starts` (each after `warmup` teacher-forced steps
from a zero state), NRMSE at the last step in x, as timeloom's `nrmse84`. ReservoirPy has no
state noise in its Reservoir here, so the regularisation is the ridge alone (`--alpha`,
default the spec's); timeloom's figure for the same seeds is printed beside it (float64).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def spec_params(program) -> dict:
    res = next(b for b in (program.spec.get("blocks") or {}).values() if b.get("type") == "reservoir")
    ridge = (program.training or {}).get("ridge") or {}
    return {"units": int(res["size"]), "sr": float(res.get("spectral_radius", 0.9)),
            "density": float(res.get("density", 0.1)), "input_scaling": float(res.get("input_scaling", 1.0)),
            "leak": float(res.get("alpha", 0.0)), "alpha": float(ridge.get("alpha", 1e-6)),
            "washout": int(ridge.get("washout", 0))}


def timeloom_esn(program, seed: int) -> tuple[dict, object]:
    from runtime import Network
    from runtime.train import tasks
    from runtime.train.config import Config
    from runtime.train.trainer import Trainer

    cfg = Config.from_training(program.training)
    cfg.seed = seed
    task = tasks.load_task(program, seed)
    net = Network(program, backend="numpy", dtype="float32", seed=seed)
    t0 = time.perf_counter()
    Trainer(net, task, cfg).fit()
    fit_s = time.perf_counter() - t0
    score = task.score(net)
    fr = task.free_run(net, steps=84)
    return {"nrmse": score["nrmse"], "free_run_nrmse": fr["nrmse"], "free_run_nrmse_at_end": fr["nrmse_at_end"],
            "fit_seconds": fit_s}, task


def reservoirpy_esn(task, p: dict, seed: int) -> dict:
    from reservoirpy import mat_gen
    from reservoirpy.nodes import Reservoir, Ridge

    from runtime.data.metrics import nrmse

    s = p["input_scaling"]
    reservoir = Reservoir(p["units"], lr=1.0 - p["leak"], sr=p["sr"], input_scaling=1.0,
                          rc_connectivity=p["density"], input_connectivity=1.0,
                          Win=mat_gen.uniform(low=-s, high=s), W=mat_gen.normal, bias=0.0, seed=seed)
    readout = Ridge(ridge=p["alpha"])
    esn = reservoir >> readout
    series = task.series
    n_train, length, warm = task.n_train, task.length, task.context()
    x_train = series[:n_train, None]
    y_train = series[1:n_train + 1, None]
    t0 = time.perf_counter()
    esn.fit(x_train, y_train, warmup=p["washout"])
    fit_s = time.perf_counter() - t0
    esn.reset()
    x_test = series[n_train - warm:length, None]
    pred = esn.run(x_test)[warm:, 0]
    target = series[n_train + 1:length + 1]
    one_step = nrmse(pred, target)
    # free run, timeloom's protocol (MackeyGlass.free_run): warm up on the true series, feed back
    steps, runs = 84, 10
    first, last = n_train - 1, length - steps
    starts = np.unique(np.linspace(first, last, num=min(runs, last - first + 1)).round().astype(int))
    warmup = max(1, min(task.warmup, first + 1))
    errs = []
    for st in starts:
        esn.reset()
        y = esn.run(series[st - warmup + 1:st + 1, None])[-1]
        preds = [float(y[0])]
        for _ in range(steps - 1):
            y = esn.step(np.array([preds[-1]]))
            preds.append(float(np.ravel(y)[0]))
        errs.append(np.array(preds) - series[st + 1:st + steps + 1])
    err = np.stack(errs, axis=1)
    fr = float(np.sqrt(np.mean(err ** 2)) / series.std())
    return {"nrmse": one_step, "free_run_nrmse": fr, "fit_seconds": fit_s}


def reservoirpy_jaeger(task, program, seed: int, alpha: float) -> dict:
    """The esn_jaeger2004 protocol with ReservoirPy nodes (feedback as a delayed second input)."""
    from reservoirpy import mat_gen
    from reservoirpy.nodes import Reservoir, Ridge

    res = next(b for b in (program.spec.get("blocks") or {}).values() if b.get("type") == "reservoir")
    ridge = (program.training or {}).get("ridge") or {}
    washout = int(ridge.get("washout", 0))
    reservoir = Reservoir(int(res["size"]), lr=1.0, sr=float(res.get("spectral_radius", 0.9)), input_scaling=1.0,
                          rc_connectivity=float(res.get("density", 0.1)), input_connectivity=1.0,
                          Win=mat_gen.uniform(low=-1.0, high=1.0), W=mat_gen.normal, bias=0.0, seed=seed)
    readout = Ridge(ridge=alpha)
    v, n_train, bias = task.series, task.n_train, float(task.bias_input)

    def inputs(prev):  # (T, 2): the constant and y(t-1)
        return np.stack([np.full(len(prev), bias), prev], axis=1)

    t0 = time.perf_counter()
    prev = np.concatenate([[0.0], v[1:n_train]])  # y(t-1) = target(t-1) = v(t); zero before the start
    states = reservoir.run(inputs(prev))
    target = np.arctanh(np.clip(v[1:n_train + 1], -1 + 1e-15, 1 - 1e-15))[:, None]
    readout.fit(states[washout:], target[washout:])
    fit_s = time.perf_counter() - t0
    steps, warm = task.free_run_steps or 84, max(1, min(task.warmup, n_train))
    starts = task.free_run_starts(steps, task.free_run_runs)
    preds = []
    for st in starts:
        reservoir.reset()
        window = v[st - warm + 1:st + 1]
        prev = np.concatenate([[0.0], window[1:]])  # teacher-forced warm-up, as timeloom's free_run
        h = reservoir.run(inputs(prev))[-1:]
        out = [float(np.tanh(readout.run(h))[0, 0])]
        while len(out) < steps:
            h = reservoir.run(inputs(np.array([out[-1]])))
            out.append(float(np.tanh(readout.run(h))[0, 0]))
        preds.append(out)
    pred = task.unsquash(np.array(preds).T)
    truth = task.unsquash(np.stack([v[st + 1:st + steps + 1] for st in starts], axis=1))
    err = pred - truth
    std = task.raw[:task.length].std()
    return {"nrmse84": float(np.sqrt(np.mean(err[-1] ** 2)) / std),
            "nrmse_free_run": float(np.sqrt(np.mean(err ** 2)) / std), "fit_seconds": fit_s}


def jaeger(args) -> int:
    import reservoirpy

    from compiler import compile_spec
    from runtime import Network
    from runtime.train import tasks
    from runtime.train.config import Config
    from runtime.train.trainer import Trainer

    spec = args.spec if args.spec != str(ROOT / "specs" / "esn.yaml") else str(ROOT / "specs" / "esn_jaeger2004.yaml")
    program = compile_spec(spec)
    alpha = args.alpha if args.alpha is not None else \
        float(((program.training or {}).get("ridge") or {}).get("alpha", 1e-6))
    print(f"Jaeger & Haas 2004 protocol ({Path(spec).name}); ReservoirPy {reservoirpy.__version__} ridge "
          f"alpha {alpha:g}, timeloom float64 with the spec's settings")
    rows = []
    for seed in range(args.seed_offset, args.seed_offset + args.seeds):
        task = tasks.load_task(program, seed)
        tl = None
        if not args.no_timeloom:
            cfg = Config.from_training(program.training)
            cfg.seed = seed
            net = Network(program, backend="numpy", dtype="float64", seed=seed)
            Trainer(net, task, cfg).fit()
            tl = task.free_run(net, steps=task.free_run_steps or 84, runs=task.free_run_runs)["nrmse_at_end"]
        rp = reservoirpy_jaeger(task, program, seed, alpha)
        rows.append({"seed": seed, "timeloom_nrmse84": tl, **{f"reservoirpy_{k}": x for k, x in rp.items()}})
        print(f"seed {seed}: NRMSE84 timeloom {tl if tl is None else f'{tl:.3e}'}  "
              f"ReservoirPy {rp['nrmse84']:.3e}", flush=True)
    out = {"protocol": "jaeger2004", "seeds": [r["seed"] for r in rows], "alpha": alpha,
           "reservoirpy_version": reservoirpy.__version__,
           "reservoirpy_nrmse84": statistics.median(r["reservoirpy_nrmse84"] for r in rows), "rows": rows}
    tls = [r["timeloom_nrmse84"] for r in rows if r["timeloom_nrmse84"] is not None]
    out["timeloom_nrmse84"] = statistics.median(tls) if tls else None
    print(f"median NRMSE84: timeloom {out['timeloom_nrmse84']}  ReservoirPy {out['reservoirpy_nrmse84']:.3e}")
    if args.json:
        print(json.dumps(out))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="timeloom ESN vs ReservoirPy ESN on Mackey-Glass")
    ap.add_argument("--spec", default=str(ROOT / "specs" / "esn.yaml"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="also print one JSON line with the results")
    ap.add_argument("--jaeger", action="store_true", help="the esn_jaeger2004 protocol (output feedback, free runs)")
    ap.add_argument("--alpha", type=float, default=None, help="--jaeger: ReservoirPy's ridge (default: the spec's)")
    ap.add_argument("--seed-offset", type=int, default=0, help="--jaeger: first seed")
    ap.add_argument("--no-timeloom", action="store_true", help="--jaeger: ReservoirPy only")
    args = ap.parse_args(argv)
    try:
        import reservoirpy
    except ImportError:
        print("reservoirpy is not installed: pip install reservoirpy (benchmark-only)", file=sys.stderr)
        return 3
    if args.jaeger:
        return jaeger(args)
    from compiler import compile_spec

    program = compile_spec(args.spec)
    p = spec_params(program)
    print(f"ESN: {p['units']} units, spectral radius {p['sr']}, density {p['density']}, input scaling "
          f"{p['input_scaling']}, leak {p['leak']}, ridge alpha {p['alpha']:g}, washout {p['washout']}; "
          f"data {program.data}; ReservoirPy {reservoirpy.__version__}")
    print(f"{'seed':>4} | {'timeloom 1-step':>15} | {'ReservoirPy 1-step':>18} | {'timeloom free-run 84':>20} | "
          f"{'ReservoirPy free-run 84':>23}")
    rows = []
    for seed in range(args.seeds):
        tl, task = timeloom_esn(program, seed)
        rp = reservoirpy_esn(task, p, seed)
        rows.append({"seed": seed, "timeloom": tl, "reservoirpy": rp})
        print(f"{seed:>4} | {tl['nrmse']:>15.3e} | {rp['nrmse']:>18.3e} | {tl['free_run_nrmse']:>20.4f} | "
              f"{rp['free_run_nrmse']:>23.4f}", flush=True)

    def med(who, key):
        return statistics.median(r[who][key] for r in rows)

    out = {"seeds": args.seeds, "params": p, "reservoirpy_version": reservoirpy.__version__,
           "timeloom_nrmse": med("timeloom", "nrmse"), "reservoirpy_nrmse": med("reservoirpy", "nrmse"),
           "timeloom_free_run_nrmse": med("timeloom", "free_run_nrmse"),
           "reservoirpy_free_run_nrmse": med("reservoirpy", "free_run_nrmse"), "rows": rows}
    print(f"median | {out['timeloom_nrmse']:>15.3e} | {out['reservoirpy_nrmse']:>18.3e} | "
          f"{out['timeloom_free_run_nrmse']:>20.4f} | {out['reservoirpy_free_run_nrmse']:>23.4f}")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
