"""Looking inside a network: gradient flow over time, eigenvalues, states and gates over time,
the run report (report.html) and the interactive unrolled-graph viewer.

One module per job: `gradients` (||dL/dh_{T-k}|| by lag), `spectrum` (recurrent weight
matrices and the step Jacobian), `states` (heatmaps of units over time), `viewer` (the
unrolled graph as HTML/JS), `report` (report.html), `browser` (headless Chromium check),
`common` (network, task batch, figures), `cli` (`timeloom inspect ...`).
Matplotlib is imported only when a picture is drawn.
"""
from .gradients import GradientFlow, gradient_flow
from .report import SECTIONS, write_report, write_run_report
from .spectrum import (
           Spectrum,
           jacobian_spectrum,
           spectra,
           step_jacobian,
           weight_spectra,
)
from .states import choose_sequence, trajectories
from .viewer import graph_data, viewer_html

__all__ = ["SECTIONS", "GradientFlow", "Spectrum", "choose_sequence", "gradient_flow", "graph_data",
           "jacobian_spectrum", "spectra", "step_jacobian", "trajectories", "viewer_html", "weight_spectra",
           "write_report", "write_run_report"]
