"""Matplotlib helpers shared by the workloads (Agg backend: no display needed on the lab host)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (same length as the input)."""
    arr = np.asarray(values, dtype=float)
    if window <= 1 or len(arr) == 0:
        return arr
    csum = np.cumsum(np.insert(arr, 0, 0.0))
    out = np.empty_like(arr)
    for i in range(len(arr)):
        lo = max(0, i + 1 - window)
        out[i] = (csum[i + 1] - csum[lo]) / (i + 1 - lo)
    return out


def loss_curve(
    step_loss: Sequence[float],
    steps_per_epoch: int,
    epochs: Sequence[dict[str, Any]],
    path: str | Path,
    title: str,
) -> Path:
    """Training loss per step (raw and smoothed) against epochs, test accuracy per epoch on the right."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.arange(1, len(step_loss) + 1) / max(1, steps_per_epoch)
    ax.plot(x, step_loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="train loss (per batch)")
    window = max(1, steps_per_epoch // 20)
    ax.plot(x, smooth(step_loss, window), color="tab:blue", linewidth=1.8, label=f"train loss (mean of {window})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax2 = ax.twinx()
    ep_x = [e["epoch"] for e in epochs]
    acc = [100.0 * e["test_accuracy"] for e in epochs]
    ax2.plot(ep_x, acc, "o-", color="tab:red", label="test accuracy (10k test set)")
    for xe, ye in zip(ep_x, acc, strict=False):
        ax2.annotate(
            f"{ye:.2f}%", (xe, ye), textcoords="offset points", xytext=(0, 8), ha="center", color="tab:red", fontsize=8
        )
    ax2.axhline(99.0, color="tab:red", linestyle=":", linewidth=1, label="99% target")
    ax2.set_ylabel("test accuracy (%)")
    lo = min(acc + [99.0])
    ax2.set_ylim(max(0.0, lo - 1.0), 100.0)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(handles, labels, loc="center right", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def prediction_grid(
    images: np.ndarray,
    predicted: Sequence[int],
    true: Sequence[int],
    path: str | Path,
    title: str,
    columns: int = 8,
) -> Path:
    """Grid of 28x28 digits titled 'pred p / true t'; wrong predictions in red with a red frame."""
    n = len(images)
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.25, rows * 1.45))
    axes = np.atleast_1d(axes).ravel()
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255 if images[i].max() > 1 else 1)
        ok = int(predicted[i]) == int(true[i])
        color = "black" if ok else "red"
        ax.set_title(
            f"pred {int(predicted[i])} / true {int(true[i])}" + ("" if ok else " ✗"), fontsize=7.5, color=color
        )
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(0.5 if ok else 2.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def grouped_bars(
    groups: Sequence[str],
    series: dict[str, Sequence[float | None]],
    path: str | Path,
    title: str,
    ylabel: str,
    log_scale: bool = True,
    notes: Sequence[str] = (),
) -> Path:
    """Grouped bar chart: one group per x label, one bar per series; ``None`` values are left out
    and labelled 'n/a' so a skipped measurement never looks like a zero."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) * max(1, len(series)) ** 0.5), 4.8))
    n_series = max(1, len(series))
    width = 0.8 / n_series
    x = np.arange(len(groups))
    for k, (name, values) in enumerate(series.items()):
        offs = x - 0.4 + width * (k + 0.5)
        vals = [v if v is not None else float("nan") for v in values]
        bars = ax.bar(offs, vals, width, label=name)
        for xb, v, bar in zip(offs, values, bars, strict=False):
            if v is None:
                # x in data units, y in axes fraction: visible whatever the scale
                ax.text(
                    xb,
                    0.02,
                    "n/a",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                    color="gray",
                    transform=ax.get_xaxis_transform(),
                )
                bar.set_visible(False)
            else:
                ax.text(xb, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_ylabel(ylabel)
    if log_scale:
        ax.set_yscale("log")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    if notes:
        fig.text(0.01, -0.02, "\n".join(notes), fontsize=7, va="top", ha="left", color="dimgray")
    return _save(fig, path)
