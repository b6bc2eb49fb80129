"""`timeloom sweep`: many `timeloom run`s of one spec (grid or random search x seeds) on Ray.

    plan.py      the trials: --grid / --sample / --seeds, stable trial ids
    trial.py     one trial in a worker process: the calls of `timeloom run`, its record
    driver.py    Ray: local cluster or --address, `workers` at a time, one retry, progress
    tune.py      --scheduler asha: the same trials as a Ray Tune experiment with ASHAScheduler
    store.py     sweeps/NAME/: sweep.json, trials.json (resume), trials/ID/
    success.py   the success criterion ("mse<0.01", defaults per task)
    report.py    results.csv, aggregate.json (success rate, median steps to solve, best metric),
                 metric.png, the printed summary
    cli.py       the `sweep` command

Ray is imported only when trials run (driver.py, tune.py): `timeloom` works without it.
"""
from .api import Outcome, run_sweep
from .driver import Settings
from .plan import Plan, Trial

__all__ = ["Outcome", "Plan", "Settings", "Trial", "run_sweep"]
