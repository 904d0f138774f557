"""Build tests/data/gama_kids_sdss/G266033.npz from ../shared/data/profit_gama (run from the
repository root): GAMA 266033 in KiDS r (0.2"/px) and SDSS r (0.339"/px), cut to 81x81 and
49x49 pixels around the galaxy (the same 16.2" x 16.6" of sky), with sigma maps, masks (True =
used: sky and the target's segment) and PSFs normalised to sum 1."""
import numpy as np
from astropy.io import fits

SRC = "../shared/data/profit_gama/"
CAT = "266033"
# centres, FITS 1-based: KiDS from ExampleInit.tab (Lange et al. 2015), SDSS as estimated in
# sdss_frame_centres_and_check_estimated_here.csv
CENTRES = {"KiDS": (66.0826, 79.0872), "SDSS": (50.94, 51.44)}
HALF = {"KiDS": 40, "SDSS": 24}
out = {}
for s, (cx, cy) in CENTRES.items():
    im, sg, seg, ps = (fits.getdata(f"{SRC}{s}/G{CAT}{k}.fits").astype(t) for k, t in
                       (("fitim", np.float32), ("sigma", np.float32), ("segim", np.int32), ("psfim", np.float64)))
    ix, iy = int(round(cx - 1)), int(round(cy - 1))
    label = seg[iy, ix]
    sl = (slice(iy - HALF[s], iy + HALF[s] + 1), slice(ix - HALF[s], ix + HALF[s] + 1))
    out[f"{s}_image"], out[f"{s}_sigma"] = im[sl], sg[sl]
    out[f"{s}_mask"] = ((seg == 0) | (seg == label))[sl]
    out[f"{s}_psf"] = (ps / ps.sum()).astype(np.float32)
    out[f"{s}_origin"] = np.array([ix - HALF[s], iy - HALF[s]])      # 0-based (x, y) of the cut's pixel [0, 0]
np.savez_compressed("tests/data/gama_kids_sdss/G266033.npz", **out)
print({k: v.shape for k, v in out.items()})
