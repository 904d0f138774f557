"""``galmoss-jax example`` (README's first command) in a subprocess compiled with XLA's default
settings: it writes its tables, image blocks and figures, and its single-Sérsic fits of the
bundled SDSS galaxies equal the same fits in this process, which compiles with the suite's
``FAST_COMPILE`` setting (tests/conftest.py).  So the two XLA:CPU code generators are held to
one answer, and the suite's setting cannot hide a difference."""
import os
import subprocess
import sys

import jax
import numpy as np
from astropy.table import Table
from conftest import FAST_COMPILE

import galmoss_jax as gj
from galmoss_jax.io import read_image, read_mask

SDSS = os.path.join(os.path.dirname(gj.__file__), "data", "sdss")
NAMES = ["J092800.99+014011.9", "J100247.00+042559.8", "J162123.19+322056.4"]
PARAMS = ["sersic_x0", "sersic_y0", "sersic_mag", "sersic_r_e", "sersic_n", "sersic_q", "sersic_pa"]


def test_example_with_xla_defaults_equals_the_fit_here(tmp_path):
    assert jax.config.jax_enable_x64
    flags = os.environ.get("XLA_FLAGS", "").replace(FAST_COMPILE, "").strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_ENABLE_X64="1", MPLBACKEND="Agg")
    out = tmp_path / "example"
    run = subprocess.run([sys.executable, "-m", "galmoss_jax.cli", "example", "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "sersic.ecsv").exists() and (out / "bulge_disk.ecsv").exists()
    figures = sorted(os.listdir(out / "figures"))
    assert len(figures) == 2 * (len(NAMES) + 1) and all(f.endswith(".png") for f in figures), figures
    assert all(os.path.getsize(out / "figures" / f) > 10_000 for f in figures)
    theirs = Table.read(out / "sersic.ecsv")
    assert list(theirs["name"]) == NAMES and np.all(theirs["status"] == 0)

    labels = {"J162123.19+322056.4": 2}
    data = np.stack([read_image(os.path.join(SDSS, f"{n}_image.fits")) for n in NAMES])
    sigma = np.stack([read_image(os.path.join(SDSS, f"{n}_sigma.fits")) for n in NAMES])
    psf = np.stack([read_image(os.path.join(SDSS, f"{n}_psf.fits")) for n in NAMES])
    mask = np.stack([read_mask(os.path.join(SDSS, f"{n}_mask.fits"), keep_labels=(0, labels.get(n, 1)))
                     for n in NAMES])
    ours = gj.fit("sersic", data, sigma=sigma, mask=mask, psf=psf, zeropoint=22.5).to_table()
    # the same minimum: chi2 to 1e-9, every parameter to 1e-3 of its error (rounding differs
    # between the code generators, so LM's path may differ in its last steps)
    np.testing.assert_allclose(theirs["chi2"], ours["chi2"], rtol=1e-9)
    for c in PARAMS:
        np.testing.assert_array_less(np.abs(theirs[c] - ours[c]), 1e-3 * ours[c + "_err"], err_msg=c)
        np.testing.assert_allclose(theirs[c + "_err"], ours[c + "_err"], rtol=1e-4, err_msg=c)
