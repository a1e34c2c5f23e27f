"""Regenerate the figure of docs/scaled-formats.md: ``python docs/img/make_block_figures.py``."""

from pathlib import Path

import numpy as np

from fpsim.analysis import plot_block_error

HERE = Path(__file__).parent


def main():
    rng = np.random.default_rng(0)
    # 4096 values, heavy-tailed (Student t, 3 dof) with a slowly varying magnitude
    x = rng.standard_t(3, 4096) * np.exp2(np.sin(np.arange(4096) / 400.0) * 4)
    fig = plot_block_error(x, ["mxfp4", "nvfp4", "mxfp6_e2m3", "mxfp8_e4m3"],
                           title="Per-block relative RMS error (Student-t data)")
    fig.savefig(HERE / "block_error.png", dpi=110)
    print("wrote", HERE / "block_error.png")


if __name__ == "__main__":
    main()
