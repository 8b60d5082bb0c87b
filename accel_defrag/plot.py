# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The cluster view as a heatmap (matplotlib, the ``sim`` extra): one
panel per resource class, one cell per host in name order, laid out in
rows; the colour is the share of the host's free functions that are
fragmented (outside whole free regions: dark is good, bright is lost
capacity), the number in a cell its whole free regions, grey a host
without regions of the class."""

from __future__ import annotations

import importlib.util
import math
import os

from accel_defrag import cluster as cl

# Cells are numbered up to this many hosts; past it only coloured.
NUMBERED = 400


class PlotError(Exception):
    """The plot cannot be drawn where asked; the message says why."""


def check_target(path: str) -> None:
    """Refuse, before reading placement, what would fail after it."""
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise PlotError(f"--plot {path} is a folder; expected a file name")
    if not os.path.isdir(folder):
        raise PlotError(f"--plot {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PlotError(f"--plot {path}: folder {folder} is not writable")
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotError("--plot needs matplotlib (pip install "
                        "'nova-accel[sim]')")


def heatmap(cluster: cl.Cluster, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import numpy
    from matplotlib import pyplot

    figures = cl.host_figures(cluster)
    hosts = list(figures)
    classes = sorted({rc for f in figures.values() for rc in f}) or ["-"]
    columns = max(1, math.ceil(math.sqrt(len(hosts) * 2)))
    rows = max(1, math.ceil(len(hosts) / columns))
    fig, axes = pyplot.subplots(
        len(classes), 1, squeeze=False,
        figsize=(min(2 + 0.45 * columns, 24),
                 min(1.5 + (0.45 * rows + 0.8) * len(classes), 40)))
    image = None
    for ax, rc in zip(axes[:, 0], classes, strict=True):
        # -1: no host there (white), NaN: a host without the class (grey).
        share = numpy.full((rows, columns), -1.0)
        share.flat[:len(hosts)] = numpy.nan
        for i, host in enumerate(hosts):
            f = figures[host].get(rc)
            if f is None:
                continue
            r, c = divmod(i, columns)
            share[r, c] = f.fragmented / f.free if f.free else 0.0
            if len(hosts) <= NUMBERED:
                ax.text(c, r, str(f.whole_free_regions), ha="center",
                        va="center", fontsize=8,
                        color="white" if share[r, c] < 0.5 else "black")
        cmap = matplotlib.colormaps["magma"].copy()
        cmap.set_bad("#d0d0d0")
        cmap.set_under("white")
        image = ax.imshow(numpy.ma.masked_invalid(share), cmap=cmap,
                          vmin=0.0, vmax=1.0, aspect="equal")
        ax.set_title(rc, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks(range(rows))
        ax.set_yticklabels([cluster.hosts[hosts[r * columns]].name
                            if hosts[r * columns] in cluster.hosts
                            else hosts[r * columns] for r in range(rows)],
                           fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.8,
                     label="fragmented share of free functions")
    fig.text(0.02, 0.01, "a cell per host, in name order; the number: its "
             "whole free regions; grey: no region of the class",
             fontsize=8)
    fig.savefig(path, dpi=100)
    pyplot.close(fig)
