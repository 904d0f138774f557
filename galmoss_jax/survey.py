"""Large runs: streaming, resumable, multi-device and multi-machine fitting.

A survey is a list of galaxies, each read from disk only when its batch is due: the planes of
FITS cubes (``image``, ``sigma``, ``mask``, ``psf``; memory-mapped) or the rows of a catalogue
table that names each galaxy's cutout files (:func:`catalog_galaxies`).  Galaxies are grouped
into batches of a fixed size ``batch_size`` and a fixed padded shape, so that every batch goes
through the same compiled :func:`galmoss_jax.fit` core:

* stamps are padded on the right and at the top (row and column indices kept, so ``x0, y0``
  stay in the cutout's own pixel frame) up to the next multiple of ``bucket`` pixels, the
  padding masked (``mask`` False, so it never enters the statistic); PSFs are zero-padded about
  their centre to the largest PSF of the bucket; galaxies with the same padded stamp shape
  form one bucket, and each bucket is cut into batches in catalogue order;
* the last batch of a bucket is filled up with copies of its first galaxy, whose rows are
  dropped;
* the batch plan depends only on the inputs, ``batch_size`` and ``bucket``, never on where a run
  stopped: a resumed run fits the same batches through the same compiled function and its
  table equals an uninterrupted run's bit for bit.

Streaming: three stages run side by side, so that the engine (the device) does not wait for the
host: a reader thread reads the next batches and prepares them for the engine (checks, initial
values; a bounded queue of ``prefetch`` batches), the calling thread fits one batch after
another, and a writer thread turns each fitted batch into its table and writes it (JAX releases
the GIL while it computes).  ``SurveySummary.fit_seconds`` is the time the engine's stage ran,
so ``idle_fraction`` is the share of the run in which it waited for the other two.
Each finished batch is written atomically (temporary file + ``os.replace``) as
``<out>.parts/batch-NNNNNN.fits`` next to a ``manifest.json`` that records the plan and the
options; a run killed at any moment (SIGKILL included) loses at most the batches in flight, and
``resume=True`` (CLI ``--resume``) refits only the batches without a part.  At the end the parts
are merged, in catalogue order, into the output table (written atomically) and the parts
directory is removed.  (Testing hook, inert unless set: with the environment variable
``GALMOSS_JAX_KILL_AFTER_PART=k`` the process kills itself with SIGKILL right after it has
written part ``k``, so that tests interrupt a run at a known point instead of racing a clock.)

Devices: each batch is split over the local JAX devices along the galaxy axis
(``NamedSharding`` over a 1-D mesh); ``batch_size`` is rounded up to a multiple of the device
count.  Machines: with a ``dask.distributed`` client (or a scheduler address) consecutive
batches form chunks that run as Dask tasks on the workers (each on its own devices, with
``retries``); the chunks write the same part files, so a crashed client can resume too.

Options: a survey takes exactly :func:`galmoss_jax.fit`'s options (:class:`FitOptions`: starts,
errors and bootstrap, neighbour masks, solver, ...), and each batch goes through ``fit``.

Per-galaxy input problems never stop a run: they become the galaxy's status
(:class:`galmoss_jax.Status`): ``10`` = an input file is missing, ``11`` = an input is unusable
(unreadable FITS, wrong dimensions, sigma and mask shapes that differ from the image, an
invalid PSF, no sigma map and no gain).
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import math
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import warnings

import numpy as np

from ._errors import GalmossError, InputFileError, ParameterError
from ._fit import FitOptions
from ._status import STATUS_MESSAGES, Status

INPUT_MISSING = int(Status.INPUT_MISSING)
INPUT_INVALID = int(Status.INPUT_INVALID)

_RESULT_COLUMNS = ("id", "chi2", "chi2_nu", "dof", "n_iter", "status", "status_msg")
_CATALOG_RESERVED = ("id", "image", "sigma", "mask", "psf", "zeropoint", "gain", "read_noise", "sky")
KILL_AFTER_PART_ENV = "GALMOSS_JAX_KILL_AFTER_PART"   # testing hook: see the module docstring
ZP_KEYS = ("MAGZPT", "MAGZP", "ZEROPT", "MAGZERO", "ZP")


# ----------------------------------------------------------------------------- inputs

@dataclasses.dataclass(frozen=True)
class Galaxy:
    """One galaxy's inputs, by reference (paths; picklable, so Dask can ship it).

    ``image``/``sigma``/``mask``/``psf`` are FITS paths; ``*_plane`` selects a plane of a cube
    (None: the file is a 2-D image).  ``mask``: non-zero = bad pixel (GALFIT/Imfit convention).
    ``zeropoint``, ``gain`` (e- per image unit), ``read_noise`` (e-) and ``sky`` (image units,
    already subtracted) are per galaxy; ``init`` holds ``(parameter, value)`` pairs.  ``shape``
    and ``psf_shape`` are the sides read from the headers; ``status``/``error`` are set when an
    input is missing or unusable (the galaxy is then not fitted).
    """

    row: int
    id: object
    image: str | None
    image_plane: int | None = None
    sigma: str | None = None
    sigma_plane: int | None = None
    mask: str | None = None
    mask_plane: int | None = None
    psf: str | None = None
    psf_plane: int | None = None
    zeropoint: float | None = None
    gain: float | None = None
    read_noise: float = 0.0
    sky: float = 0.0
    init: tuple = ()
    shape: tuple | None = None
    psf_shape: tuple | None = None
    status: int = 0
    error: str | None = None


def _image_shape(path, name):
    """(shape, header) of the first image HDU of a FITS file, reading headers only."""
    from astropy.io import fits

    if not os.path.exists(path):
        return None, None, (INPUT_MISSING, f"{name} file {path!r} does not exist")
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            for h in hdul:
                naxis = int(h.header.get("NAXIS", 0))
                if naxis >= 2:
                    shape = tuple(int(h.header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
                    return shape, h.header.copy(), None
    except (OSError, ValueError, TypeError, KeyError) as e:
        return None, None, (INPUT_INVALID, f"{name} {path!r} is not a readable FITS file ({e})")
    return None, None, (INPUT_INVALID, f"{name} {path!r} has no image data")


def _zp_from_header(header):
    if header is None:
        return None
    for k in ZP_KEYS:
        if k in header:
            try:
                return float(header[k])
            except (TypeError, ValueError):
                return None
    return None


def _scan(g: Galaxy, default_zp, needs_zp, shared=None, repeated=()):
    """Fill in shapes (from the headers) and input errors of one catalogue galaxy.

    ``shared``: a dict caching the shapes of the sigma, mask and PSF files listed in
    ``repeated`` (one PSF file for a whole catalogue is read once, not once a row)."""
    shape, header, err = _image_shape(g.image, "image") if g.image else (None, None, (INPUT_INVALID, "no image path"))
    if err is None and len(shape) != 2:
        err = (INPUT_INVALID, f"image {g.image!r} must be a 2-D image, got shape {shape}")
    psf_shape = None
    for name in ("sigma", "mask", "psf"):
        path = getattr(g, name)
        if err is None and path is not None:
            key = (path, name)
            if shared is not None and key in shared:
                s, err = shared[key]
            else:
                s, _, err = _image_shape(path, name)
                if shared is not None and path in repeated:
                    shared[key] = (s, err)
            if err is None and (len(s) != 2 or (name != "psf" and s != shape)):
                want = "a 2-D image" if name == "psf" else f"the image's shape {shape}"
                err = (INPUT_INVALID, f"{name} {path!r} must be {want}, got shape {s}")
            if err is None and name == "psf":
                psf_shape = s
                if s[0] % 2 == 0 or s[1] % 2 == 0:
                    err = (INPUT_INVALID, f"psf {path!r} must have odd sides, got {s[0]}x{s[1]}")
    zp = g.zeropoint
    if zp is None:
        zp = default_zp if default_zp is not None else _zp_from_header(header)
    if err is None and g.sigma is None and g.gain is None:
        err = (INPUT_INVALID, "no sigma map and no gain to build one from the data")
    if err is None and needs_zp and zp is None:
        err = (INPUT_INVALID, "no zero point (column 'zeropoint', --zeropoint or a header key MAGZPT, MAGZP, ...)")
    return dataclasses.replace(g, shape=shape, psf_shape=psf_shape, zeropoint=zp,
                               status=0 if err is None else err[0], error=None if err is None else err[1])


def _value(row, col, table):
    if col not in table.colnames:
        return None
    v = row[col]
    if np.ma.is_masked(v):
        return None
    return v


def catalog_galaxies(catalog, model, *, zeropoint=None, gain=None, read_noise=0.0, sky=0.0,
                     psf=None, base_dir=None, workers: int = 8) -> list[Galaxy]:
    """The galaxies of a catalogue table, one per row, with their shapes and input status.

    Args:
        catalog: path of a FITS/ECSV/CSV/Parquet table (read with :func:`galmoss_jax.io.read_table`)
            or an :class:`astropy.table.Table`.  Columns: ``image`` (required) and optionally
            ``id``, ``sigma``, ``mask`` (non-zero = bad), ``psf``: FITS paths, relative to the
            table's directory (or ``base_dir``), empty = none; ``zeropoint``, ``gain`` (e- per image
            unit), ``read_noise`` (e-), ``sky`` (image units, already subtracted); initial values
            in result-table column names (``sersic_r_e``; NaN or masked = automatic).
        model: the :class:`~galmoss_jax.Model` (to recognise initial-value columns).
        zeropoint, gain, read_noise, sky: defaults for rows without a value (the zero point is
            else taken from the image header, keys ``MAGZPT``, ``MAGZP``, ``ZEROPT``, ...).
        psf: a PSF FITS path for rows without a ``psf``.
        workers: threads reading the headers.

    Returns:
        a list of :class:`Galaxy`; a missing or unusable input gives that galaxy status 10 or 11
        and an error message instead of an exception.
    """
    from astropy.table import Table

    from .io import read_table
    from .model import as_model

    model = as_model(model)
    if isinstance(catalog, Table):
        table = catalog
        base = os.fspath(base_dir) if base_dir is not None else os.getcwd()
    else:
        table = read_table(catalog, name="--catalog")
        base = os.fspath(base_dir) if base_dir is not None else os.path.dirname(os.path.abspath(os.fspath(catalog)))
    if "image" not in table.colnames:
        raise InputFileError(f"--catalog: the table needs an 'image' column (paths of the cutouts); "
                             f"it has {', '.join(table.colnames)}")
    init_cols = {}
    for col in table.colnames:
        if col in _CATALOG_RESERVED or col.endswith("_err") or col in _RESULT_COLUMNS:
            continue
        try:
            init_cols[col] = model.resolve(col, "--catalog")
        except ParameterError:
            continue  # other columns (ra, dec, names ...) are carried by the user, not by the fit
    ids = list(table["id"]) if "id" in table.colnames else list(range(len(table)))
    if len(set(ids)) != len(ids):
        raise InputFileError("--catalog: the 'id' column has repeated values; each galaxy needs its own id")

    def path(row, col):
        v = _value(row, col, table)
        if v is None:
            return None
        v = str(v).strip()
        return None if v in ("", "--", "None", "none") else os.path.normpath(os.path.join(base, v))

    def num(row, col, default):
        v = _value(row, col, table)
        if v is None:
            return default
        v = float(v)
        return default if not math.isfinite(v) else v

    gals = []
    for i, row in enumerate(table):
        init = []
        for col, name in init_cols.items():
            v = num(row, col, None)
            if v is not None:
                init.append((name, v))
        gid = ids[i]
        gid = gid.item() if hasattr(gid, "item") else gid
        gals.append(Galaxy(row=i, id=gid, image=path(row, "image"), sigma=path(row, "sigma"),
                           mask=path(row, "mask"), psf=path(row, "psf") or (os.fspath(psf) if psf else None),
                           zeropoint=num(row, "zeropoint", None), gain=num(row, "gain", gain),
                           read_noise=num(row, "read_noise", read_noise), sky=num(row, "sky", sky),
                           init=tuple(init)))
    counts = collections.Counter(p for g in gals for p in (g.sigma, g.mask, g.psf) if p is not None)
    repeated = {p for p, c in counts.items() if c > 1}
    shared: dict = {}
    needs_zp = _needs_zp(model)
    # a file listed once is not cached (cutout sigma maps); a race between threads on a
    # repeated one only reads its header twice
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as ex:
        return list(ex.map(lambda g: _scan(g, zeropoint, needs_zp, shared, repeated), gals))


def cube_galaxies(image, *, sigma=None, mask=None, psf=None, init=None, zeropoint=None, gain=None,
                  read_noise=0.0, sky=0.0) -> list[Galaxy]:
    """The galaxies of FITS cubes: plane ``g`` of ``image`` (G, H, W) is galaxy ``g`` (id ``g``).

    ``sigma`` and ``mask`` (non-zero = bad) are cubes of the same shape or one (H, W) image for
    all; ``psf`` a (h, w) image or a (G, h, w) cube.  ``init``: ``{parameter: scalar or (G,)}``.
    Planes are read with memory mapping, one batch at a time.  ``zeropoint`` defaults to the
    image header's (``MAGZPT``, ``MAGZP``, ...).
    """
    image = os.fspath(image)
    shape, header, err = _image_shape(image, "IMAGE")
    if err is not None:
        raise InputFileError(err[1])
    if len(shape) not in (2, 3):
        raise InputFileError(f"IMAGE: {image!r} must be an image or a (G, H, W) cube, got shape {shape}")
    G = shape[0] if len(shape) == 3 else 1
    hw = shape[-2:]
    planes = {}
    for name, p in (("sigma", sigma), ("mask", mask), ("psf", psf)):
        if p is None:
            planes[name] = (None, None)
            continue
        p = os.fspath(p)
        s, _, err = _image_shape(p, f"--{name}")
        if err is not None:
            raise InputFileError(err[1])
        if name != "psf" and s[-2:] != hw:
            raise InputFileError(f"--{name}: {p!r} has shape {s}; expected {hw} or {(G,) + hw}")
        if len(s) == 3 and s[0] != G:
            raise InputFileError(f"--{name}: {p!r} has {s[0]} planes for {G} galaxies")
        if name == "psf":
            planes["psf_shape"] = s[-2:]
        planes[name] = (p, len(s) == 3)
    if sigma is None and gain is None:
        raise ParameterError("give --sigma SIGMA or --gain G (sigma is then built from the data)")
    zp = zeropoint if zeropoint is not None else _zp_from_header(header)
    init = {k: np.broadcast_to(np.asarray(v, float), (G,)) for k, v in (init or {}).items()}
    gals = []
    for g in range(G):
        def plane(name):
            p, cube = planes[name]
            return p, (g if cube else None)
        s_p, s_i = plane("sigma")
        m_p, m_i = plane("mask")
        p_p, p_i = plane("psf")
        gals.append(Galaxy(row=g, id=g, image=image, image_plane=g if len(shape) == 3 else None,
                           sigma=s_p, sigma_plane=s_i, mask=m_p, mask_plane=m_i, psf=p_p, psf_plane=p_i,
                           zeropoint=zp, gain=gain, read_noise=read_noise, sky=sky,
                           init=tuple((k, float(v[g])) for k, v in init.items() if np.isfinite(v[g])),
                           shape=tuple(hw), psf_shape=planes.get("psf_shape")))
    return gals


# ----------------------------------------------------------------------------- plan

@dataclasses.dataclass(frozen=True)
class Batch:
    """Galaxies fitted together: ``index`` in the plan, padded ``shape``/``psf_shape``, the
    real galaxies (at most ``size``) and whether one PSF serves them all (``shared_psf``)."""

    index: int
    shape: tuple
    psf_shape: tuple | None
    galaxies: tuple
    size: int
    shared_psf: bool = False


def _round_up(n, step):
    return int(math.ceil(n / step) * step)


def plan_batches(galaxies, batch_size: int, *, bucket: int = 16) -> list[Batch]:
    """Cut the usable galaxies into batches of ``batch_size`` with a common padded shape.

    Deterministic: buckets in order of their padded shapes, galaxies in catalogue order within
    a bucket.  ``bucket``: stamps are padded to multiples of it (pixels); the PSFs of a bucket
    are zero-padded about their centres to its largest PSF; ``bucket=1`` pads no stamp (one
    bucket per distinct shape).
    """
    if batch_size < 1:
        raise ParameterError(f"batch_size must be a positive integer, got {batch_size}")
    if bucket < 1:
        raise ParameterError(f"bucket must be a positive integer (pixels), got {bucket}")
    groups = {}
    for g in galaxies:
        if g.status:
            continue
        shape = (_round_up(g.shape[0], bucket), _round_up(g.shape[1], bucket))
        groups.setdefault((shape, g.psf_shape is not None), []).append(g)
    batches = []
    for key in sorted(groups):
        shape, has_psf = key
        gs = groups[key]
        pshape = None
        if has_psf:  # the largest PSF of the bucket (no padding at all when they agree)
            pshape = tuple(max(g.psf_shape[i] for g in gs) for i in (0, 1))
        for a in range(0, len(gs), batch_size):
            chunk = tuple(gs[a:a + batch_size])
            paths = {(g.psf, g.psf_plane) for g in chunk}
            shared = pshape is not None and len(paths) == 1 and chunk[0].psf_plane is None
            batches.append(Batch(index=len(batches), shape=shape, psf_shape=pshape, galaxies=chunk,
                                 size=batch_size, shared_psf=shared))
    return batches


def plan_digest(batches, failed) -> str:
    """SHA-256 of the plan (batch composition, shapes and every galaxy's inputs)."""
    h = hashlib.sha256()
    for b in batches:
        h.update(repr((b.index, b.shape, b.psf_shape, b.size, b.shared_psf,
                       [dataclasses.astuple(g) for g in b.galaxies])).encode())
    h.update(repr([dataclasses.astuple(g) for g in failed]).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- options

def describe_run(model, options: FitOptions) -> dict:
    """JSON-able summary of the model and options (recorded in the manifest; a resume must
    match it)."""
    from .model import as_model

    m = as_model(model)
    return {"model": m.spec_string, "fixed": repr(m.fixed), "tied": repr(m.tied), "free": repr(m.free_names),
            "bounds": repr(m.layout.bounds), **options.describe()}


# ----------------------------------------------------------------------------- reading a batch

class _Reader:
    """Reads planes of FITS files; cubes stay memory-mapped open for the whole run."""

    def __init__(self, keep: int = 4):
        self._open = {}
        self._recent = {}   # the last few 2-D images read (a PSF, mask or sigma shared by many)
        self._keep = keep

    def plane(self, path, plane):
        from .io import read_image

        if plane is None:
            if path in self._recent:
                return self._recent[path].copy()
            a = read_image(path, allow_cube=False)
            self._recent[path] = a
            while len(self._recent) > self._keep:
                self._recent.pop(next(iter(self._recent)))
            return a.copy()
        if path not in self._open:
            from astropy.io import fits

            hdul = fits.open(path, memmap=True)
            hdu = next(h for h in hdul if getattr(h, "data", None) is not None and h.is_image)
            self._open[path] = (hdul, hdu.data)
        return np.array(self._open[path][1][plane], dtype=float)

    def close(self):
        for hdul, _ in self._open.values():
            hdul.close()
        self._open.clear()


def _pad_psf(psf, shape):
    out = np.zeros(shape)
    h, w = psf.shape
    y0, x0 = (shape[0] - h) // 2, (shape[1] - w) // 2
    out[y0:y0 + h, x0:x0 + w] = psf
    return out


def _load_one(g: Galaxy, batch: Batch, model, reader):
    """Inputs of one galaxy, padded to the batch shapes: data, sigma, mask (the pixels
    :func:`galmoss_jax.usable_pixels` keeps), PSF, initial values (NaN where the fit
    chooses) and the number of pixels dropped for bad data or sigma."""
    from ._noise import mask_from_bad_pixels, sigma_from_data, usable_pixels

    H, W = batch.shape
    d = reader.plane(g.image, g.image_plane)
    if d.shape != g.shape:
        raise InputFileError(f"image {g.image!r} changed shape to {d.shape}")
    h, w = d.shape
    m = np.ones((h, w), bool) if g.mask is None else mask_from_bad_pixels(reader.plane(g.mask, g.mask_plane))
    s = reader.plane(g.sigma, g.sigma_plane) if g.sigma is not None else sigma_from_data(d, g.gain, g.read_noise, g.sky)
    d, s, used, bad_data, bad_sigma = usable_pixels(d, s, m)
    psf = None
    if g.psf is not None and not batch.shared_psf:
        psf = _checked_psf(reader.plane(g.psf, g.psf_plane), g.psf)
        psf = _pad_psf(psf, batch.psf_shape)
    init = {model.resolve(k, "init"): v for k, v in g.init}
    dp = np.zeros((H, W))
    sp = np.ones((H, W))
    mp = np.zeros((H, W), bool)
    dp[:h, :w], sp[:h, :w], mp[:h, :w] = d, s, used
    return dp, sp, mp, psf, init, int(bad_data.sum() + bad_sigma.sum())


def _checked_psf(psf, path):
    """A cutout's PSF, normalised to sum 1 without a warning (cutout PSFs rarely sum to 1 exactly)."""
    from .psf import check_psf

    a = np.asarray(psf, float)
    s = a.sum()
    if np.isfinite(s) and s > 0:
        a = a / s
    return check_psf(a, name=f"psf {path!r}")


def _needs_zp(model):
    return any(p.name == "mag" or p.name.startswith("mu_") for _, s in model.components for p in s.params)


@dataclasses.dataclass
class _BatchData:
    batch: Batch
    arrays: dict
    failed: dict          # slot -> (status, message)
    n_bad_pixels: int


def load_batch(batch: Batch, model, reader=None) -> _BatchData:
    """Read and prepare one batch (host side): (B, H, W) data, sigma, mask, PSFs, per-galaxy
    zero points, gains, read noise, sky and the given initial values (NaN where ``fit``
    chooses them).  A galaxy whose inputs fail here is replaced by an empty slot (all pixels
    masked) and recorded in ``failed``."""
    from .model import as_model

    model = as_model(model)
    own = reader is None
    reader = reader or _Reader()
    B = batch.size
    slots, failed, n_bad = [], {}, 0
    try:
        for k, g in enumerate(batch.galaxies):
            try:
                one = _load_one(g, batch, model, reader)
                n_bad += one[5]
            except FileNotFoundError as e:
                failed[k] = (INPUT_MISSING, str(e))
                one = None
            except (GalmossError, OSError, ValueError, TypeError) as e:
                code = INPUT_MISSING if "does not exist" in str(e) else INPUT_INVALID
                failed[k] = (code, str(e))
                one = None
            slots.append(one)
        shared = None
        if batch.shared_psf:
            g0 = batch.galaxies[0]
            try:
                shared = _pad_psf(_checked_psf(reader.plane(g0.psf, g0.psf_plane), g0.psf), batch.psf_shape)
            except (GalmossError, OSError, ValueError) as e:
                for k in range(len(batch.galaxies)):
                    failed[k] = (INPUT_MISSING if "does not exist" in str(e) else INPUT_INVALID, str(e))
                shared = np.zeros(batch.psf_shape)
                shared[batch.psf_shape[0] // 2, batch.psf_shape[1] // 2] = 1.0
    finally:
        if own:
            reader.close()
    H, W = batch.shape
    template = next((s for s in slots if s is not None), None)
    if template is None:  # every galaxy of the batch failed: fit empty stamps
        psf0 = None
        if batch.psf_shape is not None and not batch.shared_psf:
            psf0 = np.zeros(batch.psf_shape)
            psf0[batch.psf_shape[0] // 2, batch.psf_shape[1] // 2] = 1.0
        template = (np.zeros((H, W)), np.ones((H, W)), np.zeros((H, W), bool), psf0, {}, 0)
    empty = (np.zeros((H, W)), np.ones((H, W)), np.zeros((H, W), bool), template[3], {}, 0)
    filled = [s if s is not None else empty for s in slots]
    filled += [filled[0]] * (B - len(filled))  # padding slots: copies of the first galaxy
    gals = list(batch.galaxies) + [batch.galaxies[0]] * (B - len(batch.galaxies))
    arrays = dict(
        data=np.stack([s[0] for s in filled]),
        sigma=np.stack([s[1] for s in filled]),
        mask=np.stack([s[2] for s in filled]),
        psf=(shared if batch.shared_psf else
             (np.stack([s[3] for s in filled]) if batch.psf_shape is not None else None)),
        # initial values where given, NaN where fit chooses them (with the PSF, as in memory)
        init={n: np.array([s[4].get(n, np.nan) for s in filled], float)
              for n in sorted({k for s in filled for k in s[4]})},
        zeropoint=np.array([0.0 if g.zeropoint is None else g.zeropoint for g in gals]),
        gain=np.array([1.0 if g.gain is None else g.gain for g in gals]),
        read_noise=np.array([g.read_noise for g in gals]),
        sky=np.array([g.sky for g in gals]),
        any_gain=any(g.gain is not None for g in batch.galaxies),
        any_zp=any(g.zeropoint is not None for g in batch.galaxies),
    )
    return _BatchData(batch, arrays, failed, n_bad)


# ----------------------------------------------------------------------------- fitting a batch

def galaxy_sharding(batch_size: int, devices=None):
    """``NamedSharding`` of the galaxy axis over a 1-D mesh of the local devices (None when one
    device does the work).  Uses the largest device count that divides ``batch_size``."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devs = list(jax.local_devices()) if devices is None else list(devices)
    n = max(d for d in range(1, len(devs) + 1) if batch_size % d == 0)
    if n == 1:
        return None
    return NamedSharding(Mesh(np.array(devs[:n]), ("galaxy",)), PartitionSpec("galaxy"))


def _failed_table(model, galaxies, codes_msgs):
    """Result rows (NaN values) for galaxies that were not fitted."""
    from .model import as_model
    from .results import FitResult

    model = as_model(model)
    G = len(galaxies)
    P = len(model.free_names)
    res = FitResult(model=model, free_names=model.free_names,
                    values={n: np.full(G, np.nan) for n in model.param_names},
                    covariance=np.full((G, P, P), np.nan), chi2=np.full(G, np.nan),
                    chi2_nu=np.full(G, np.nan), dof=np.zeros(G, np.int64), n_iter=np.zeros(G, np.int32),
                    status=np.array([c for c, _ in codes_msgs], np.int32), stat="", batched=True)
    t = res.to_table(ids=_ids(galaxies))
    t["status_msg"] = [f"{STATUS_MESSAGES[c]}: {m}" for c, m in codes_msgs]
    t["row"] = np.array([g.row for g in galaxies], np.int64)
    return t


def _ids(galaxies):
    ids = [g.id for g in galaxies]
    if all(isinstance(i, (int, np.integer)) for i in ids):
        return np.array(ids, np.int64)
    return np.array([str(i) for i in ids])


def prepare_batch(bd: _BatchData, model, options: FitOptions):
    """The host side of :func:`galmoss_jax.fit` for one loaded batch (checks, initial values),
    ready for the engine."""
    from ._fit import _prepare
    from .model import as_model

    a = bd.arrays
    return _prepare(as_model(model), a["data"], sigma=a["sigma"], mask=a["mask"], psf=a["psf"], init=a["init"],
                    zeropoint=a["zeropoint"] if a["any_zp"] else None, gain=a["gain"] if a["any_gain"] else None,
                    read_noise=a["read_noise"], sky=a["sky"], options=options)


def batch_table(bd: _BatchData, model, res):
    """The table of a fitted batch's real galaxies (``res``: its :class:`FitResult`), with a
    ``row`` column (the catalogue index) and the galaxies that could not be read as failed rows."""
    from astropy.table import vstack

    b = bd.batch
    n = len(b.galaxies)
    t = res.to_table(ids=np.concatenate([_ids(b.galaxies), _ids(b.galaxies[:1]).repeat(b.size - n)]))[:n]
    t["status_msg"] = list(t["status_msg"])  # a variable-width copy (failure messages are longer)
    t["row"] = np.array([g.row for g in b.galaxies], np.int64)
    if bd.failed:
        keep = [k for k in range(n) if k not in bd.failed]
        bad = sorted(bd.failed)
        ft = _failed_table(model, [b.galaxies[k] for k in bad], [bd.failed[k] for k in bad])
        t = vstack([t[keep], ft], metadata_conflicts="silent")
        t.sort("row")
    return t


# ----------------------------------------------------------------------------- parts on disk

def _part_path(parts_dir, index):
    return os.path.join(parts_dir, f"batch-{index:06d}.fits")


def _write_atomic_bytes(path, data: bytes):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_part(table, parts_dir, index):
    """Write a batch's table as ``batch-NNNNNN.fits``: complete or absent, never partial."""
    from .results import write_table

    write_table(table, _part_path(parts_dir, index), overwrite=True)
    if os.environ.get(KILL_AFTER_PART_ENV, "").strip() == str(index):   # testing hook (module docstring)
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def read_part(parts_dir, index):
    from astropy.table import Table

    t = Table.read(_part_path(parts_dir, index), format="fits")
    t.convert_bytestring_to_unicode()
    t.meta.clear()
    return t


def _prepare_parts(out, parts_dir, manifest, *, resume, overwrite):
    """Create (or check, on resume) ``parts_dir`` and its manifest; refuse to clobber."""
    mpath = os.path.join(parts_dir, "manifest.json")
    exists_out = os.path.exists(out) if out else False
    exists_parts = os.path.isdir(parts_dir)
    if resume and exists_parts and os.path.exists(mpath):
        with open(mpath) as f:
            old = json.load(f)
        diff = [k for k in ("plan", "options", "n_galaxies", "batch_size", "bucket")
                if old.get(k) != manifest.get(k)]
        if diff:
            raise InputFileError(f"--resume: {parts_dir!r} belongs to a different run (its "
                                 f"{', '.join(diff)} differ{'s' if len(diff) == 1 else ''}); "
                                 f"pass --overwrite to start again")
        return
    if (exists_out or exists_parts) and not (overwrite or resume):
        what = repr(out) if exists_out else repr(parts_dir)
        raise InputFileError(f"--out: {what} exists; pass --resume to continue an interrupted run "
                             f"or --overwrite to replace it")
    if exists_parts:
        shutil.rmtree(parts_dir)
    os.makedirs(parts_dir)
    _write_atomic_bytes(mpath, json.dumps(manifest, indent=1, default=str).encode())


# ----------------------------------------------------------------------------- the run

@dataclasses.dataclass
class SurveySummary:
    """What a survey run did: ``counts`` = {status: number of galaxies}, ``fitted`` = galaxies
    fitted by this call (the rest came from parts of an earlier run), ``seconds`` (the whole
    call: planning, reading, fitting, writing, merging)."""

    n_galaxies: int
    counts: dict
    fitted: int
    seconds: float
    batch_size: int
    n_batches: int
    n_devices: int
    output: str | None = None
    #: seconds the engine's stage of a streaming run ran (None for a Dask run)
    fit_seconds: float | None = None

    @property
    def idle_fraction(self) -> float | None:
        """Share of the run's time in which the engine's stage waited for reading, initial
        values or writing (None for a Dask run or a run that fitted nothing)."""
        if self.fit_seconds is None or not self.fitted or self.seconds <= 0:
            return None
        return max(0.0, 1.0 - self.fit_seconds / self.seconds)

    def __str__(self):
        ok = self.counts.get(0, 0)
        lines = [f"{self.n_galaxies} galaxies: {ok} succeeded, {self.n_galaxies - ok} did not"
                 + (f"; {self.fitted} fitted in {self.seconds:.1f} s "
                    f"({self.fitted / self.seconds:.2f} galaxies/s)" if self.fitted and self.seconds > 0 else "")]
        if self.idle_fraction is not None:
            lines[0] += f"; the engine ran {self.fit_seconds:.1f} s (idle {100 * self.idle_fraction:.0f} % of the run)"
        for code in sorted(self.counts):
            lines.append(f"  status {code:>2}: {self.counts[code]:>8}  {STATUS_MESSAGES.get(code, '')}")
        return "\n".join(lines)


def _progress(total, initial, quiet):
    from tqdm import tqdm

    disable = quiet or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return tqdm(total=total, initial=initial, unit="gal", desc="fitting", disable=disable,
                smoothing=0.1, dynamic_ncols=True)


def _put(q: queue.Queue, item, stop: threading.Event):
    """Put ``item`` on the bounded queue ``q`` unless ``stop`` is set first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _stream(batches, model, options, parts_dir, *, sharding=None, prefetch=2, on_batch=None):
    """Fit ``batches`` in order in three stages (module docstring): a reader thread loads and
    prepares the next batches, this thread runs the engine on one after another, and a writer
    thread makes each fitted batch's table, writes its part and calls ``on_batch(batch, table)``.

    Batches whose part exists are skipped.  An error in any stage stops the run and is raised
    here (the parts written so far are kept).  Returns the number of galaxies fitted, of bad
    pixels masked, and the seconds the engine's stage ran.
    """
    import jax

    from ._fit import _run_prepared

    todo = [b for b in batches if parts_dir is None or not os.path.exists(_part_path(parts_dir, b.index))]
    if not todo:
        return 0, 0, 0.0
    # the caller's precision in the reader thread too (jax.enable_x64(...) is thread-local)
    x64 = bool(jax.config.jax_enable_x64)
    loaded: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    fitted_q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    failure: list = []   # the writer's error, raised in this thread

    def reader_loop():
        reader = _Reader()
        try:
            with jax.enable_x64(x64):
                for b in todo:
                    if stop.is_set():
                        return
                    try:
                        bd = load_batch(b, model, reader)
                        item = (bd, prepare_batch(bd, model, options))
                    except BaseException as e:  # handed to the main thread, raised there
                        item = e
                    _put(loaded, item, stop)
                    if isinstance(item, BaseException):
                        return
        finally:
            reader.close()

    def writer_loop():
        while True:
            item = fitted_q.get()
            if item is None or failure:
                return
            bd, res = item
            try:
                table = batch_table(bd, model, res)
                if parts_dir is not None:
                    write_part(table, parts_dir, bd.batch.index)
                if on_batch is not None:
                    on_batch(bd.batch, table)
            except BaseException as e:
                failure.append(e)
                stop.set()
                return

    threads = [threading.Thread(target=reader_loop, name="galmoss-reader", daemon=True),
               threading.Thread(target=writer_loop, name="galmoss-writer", daemon=True)]
    for th in threads:
        th.start()
    fitted = bad = 0
    busy = 0.0
    try:
        for _ in todo:
            item = None
            while item is None and not failure:
                try:
                    item = loaded.get(timeout=0.2)
                except queue.Empty:
                    continue
            if failure:
                break
            if isinstance(item, BaseException):
                raise item
            bd, prep = item
            t0 = time.perf_counter()
            res = _run_prepared(prep, sharding)
            busy += time.perf_counter() - t0
            _put(fitted_q, (bd, res), stop)
            fitted += len(bd.batch.galaxies)
            bad += bd.n_bad_pixels
    finally:
        _put(fitted_q, None, stop)   # the writer finishes what it holds, then stops
        threads[1].join()
        stop.set()
        threads[0].join()
    if failure:
        raise failure[0]
    return fitted, bad, busy


def _merge(out, parts_dir, batches, failed, model, options, *, overwrite, tables=None):
    """The final table in catalogue order, from the parts (or ``tables``) and the failed rows."""
    from astropy.table import vstack

    from .model import as_model
    from .results import column_name, write_table

    parts = [tables[b.index] if tables is not None else read_part(parts_dir, b.index) for b in batches]
    if failed:
        parts.append(_failed_table(model, failed, [(g.status, g.error) for g in failed]))
    t = vstack(parts, metadata_conflicts="silent") if len(parts) > 1 else parts[0]
    t.sort("row")
    t.remove_column("row")
    m = as_model(model)
    t.meta.clear()
    t.meta["model"] = m.spec_string
    t.meta["stat"] = str(options.stat)
    t.meta["free"] = ",".join(column_name(n) for n in m.free_names)
    if out is not None:
        write_table(t, out, overwrite=True)
        if parts_dir is not None and os.path.isdir(parts_dir):
            shutil.rmtree(parts_dir)
    return t


def _counts(table):
    codes, n = np.unique(np.asarray(table["status"]), return_counts=True)
    return {int(c): int(k) for c, k in zip(codes, n)}


def fit_survey(galaxies, model, *, options: FitOptions | None = None, out=None, batch_size: int = 64,
               bucket: int = 16, resume: bool = False, overwrite: bool = False, devices=None, client=None,
               chunk_batches: int = 4, retries: int = 2, prefetch: int = 2, quiet: bool = False,
               **option_values):
    """Fit a survey in fixed-shape batches, streaming from disk; returns ``(table, summary)``.

    Args:
        galaxies: from :func:`catalog_galaxies` or :func:`cube_galaxies`.
        model: a :class:`~galmoss_jax.Model`, profile name or spec string.
        options: the options of :func:`galmoss_jax.fit` (:class:`FitOptions`); or give them as
            keywords (``max_iter=``, ``starts=``, ``errors=``, ``mask_neighbours=``, ...).
        out: output table (.fits, .ecsv, .csv, .parquet).  Finished batches go to
            ``<out>.parts/`` as they complete; the table is written at the end.  None: keep
            everything in memory (no parts, no resume).
        batch_size: galaxies per compiled batch (rounded up to a multiple of the local device
            count; with ``client``, as given).
        bucket: padding step of the stamp sides, pixels (see :func:`plan_batches`).
        resume: continue a run killed before it finished (same inputs and options required);
            without it an existing ``out`` or parts directory is refused unless ``overwrite``.
        devices: the JAX devices to shard each batch over (default: all local devices).
        client: a ``dask.distributed.Client`` or a scheduler address: chunks of
            ``chunk_batches`` batches run as tasks on its workers (``retries`` reruns of a failed
            task; tasks of a worker that died are rerun by the scheduler).
        prefetch: batches read ahead by the reader thread.
        quiet: no progress bar (it is also off when stderr is not a terminal).
    """
    import jax

    t0 = time.perf_counter()
    from .model import as_model

    model = as_model(model)
    if options is None:
        options = FitOptions(**option_values)
    elif option_values:
        raise ParameterError(f"give the fit options either in FitOptions or as keywords, not both "
                             f"({', '.join(option_values)})")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive integer, got {batch_size!r}")
    devs = list(jax.local_devices()) if devices is None else list(devices)
    if client is None and batch_size % len(devs):
        batch_size = _round_up(batch_size, len(devs))
    galaxies = list(galaxies)
    if not galaxies:
        raise InputFileError("the survey has no galaxies")
    batches = plan_batches(galaxies, batch_size, bucket=bucket)
    failed = [g for g in galaxies if g.status]
    parts_dir = None
    if out is not None:
        out = os.fspath(out)
        from .results import _FORMATS

        ext = os.path.splitext(out)[1].lower()
        if ext not in _FORMATS:
            raise ParameterError(f"--out: unknown extension {ext!r}; use one of {', '.join(sorted(_FORMATS))}")
        if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise InputFileError(f"--out: directory {os.path.dirname(os.path.abspath(out))!r} does not exist")
        parts_dir = out + ".parts"
        if resume and os.path.exists(out) and not os.path.isdir(parts_dir):
            from .io import read_table

            t = read_table(out, name="--out")
            return t, SurveySummary(len(t), _counts(t), 0, 0.0, batch_size, len(batches), len(devs), out)
        manifest = {"format": "galmoss_jax survey parts 1", "plan": plan_digest(batches, failed),
                    "options": json.loads(json.dumps(describe_run(model, options), default=str)),
                    "n_galaxies": len(galaxies), "batch_size": batch_size, "bucket": bucket,
                    "n_batches": len(batches), "started": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        _prepare_parts(out, parts_dir, manifest, resume=resume, overwrite=overwrite)

    done = sum(len(b.galaxies) for b in batches
               if parts_dir is not None and os.path.exists(_part_path(parts_dir, b.index)))
    total = sum(len(b.galaxies) for b in batches)
    bar = _progress(total, done, quiet)
    tables = None if parts_dir is not None else {}
    try:
        if client is not None:
            fitted, tables = _run_dask(client, batches, model, options, parts_dir, chunk_batches, retries, bar)
            n_dev = None
            bad = 0
            busy = None
        else:
            sharding = galaxy_sharding(batch_size, devs)
            n_dev = 1 if sharding is None else len(sharding.mesh.devices.ravel())

            def on_batch(b, t):
                if tables is not None:
                    tables[b.index] = t
                bar.update(len(b.galaxies))

            fitted, bad, busy = _stream(batches, model, options, parts_dir, sharding=sharding, prefetch=prefetch,
                                        on_batch=on_batch)
    finally:
        bar.close()
    if bad:
        warnings.warn(f"{bad} pixels with non-finite data or sigma <= 0 were masked", stacklevel=2)
    if not batches and not failed:
        raise InputFileError("the survey has no galaxies")
    table = _merge(out, parts_dir, batches, failed, model, options, overwrite=overwrite, tables=tables)
    summary = SurveySummary(len(table), _counts(table), fitted, time.perf_counter() - t0, batch_size,
                            len(batches), n_dev, out, fit_seconds=busy)
    return table, summary


# ----------------------------------------------------------------------------- Dask

def fit_chunk(batches, model, options: FitOptions, parts_dir=None, x64: bool | None = None):
    """A Dask task: fit a list of batches on this worker's devices; their tables by index.

    Parts that already exist are read instead of refitted (a rerun task, or a resumed run);
    new ones are written atomically, so a task that dies half-way loses only its batch in
    flight.  ``x64``: the client's ``jax_enable_x64``, applied here so that the worker
    computes in the same precision (it is a per-process JAX setting).
    """
    import jax

    if x64 is not None and bool(jax.config.jax_enable_x64) != bool(x64):
        jax.config.update("jax_enable_x64", bool(x64))
    out = {}
    sharding_cache = {}

    def on_batch(b, t):
        out[b.index] = t

    for b in batches:
        if parts_dir is not None and os.path.exists(_part_path(parts_dir, b.index)):
            out[b.index] = read_part(parts_dir, b.index)
    todo = [b for b in batches if b.index not in out]
    for size in sorted({b.size for b in todo}):
        sharding_cache[size] = galaxy_sharding(size)
        _stream([b for b in todo if b.size == size], model, options, parts_dir, sharding=sharding_cache[size],
                on_batch=on_batch)
    return out


def _run_dask(client, batches, model, options, parts_dir, chunk_batches, retries, bar):
    import jax

    try:
        from distributed import Client, as_completed
    except ImportError:
        raise GalmossError("the Dask backend needs dask.distributed: pip install 'galmoss_jax[dask]'") from None
    own = False
    if isinstance(client, str):
        address = client
        try:
            client = Client(address, timeout=60)
        except (OSError, TimeoutError) as e:
            raise GalmossError(f"--scheduler: cannot connect to the Dask scheduler at {address!r} ({e})") from None
        own = True
    if chunk_batches < 1:
        raise ParameterError(f"chunk_batches must be a positive integer, got {chunk_batches}")
    tables = {}
    todo = []
    for b in batches:
        if parts_dir is not None and os.path.exists(_part_path(parts_dir, b.index)):
            tables[b.index] = read_part(parts_dir, b.index)
        else:
            todo.append(b)
    chunks = [todo[i:i + chunk_batches] for i in range(0, len(todo), chunk_batches)]
    tag = uuid.uuid4().hex[:12]  # task keys unique to this run (a scheduler may remember old keys)
    x64 = bool(jax.config.jax_enable_x64)
    fitted = 0
    try:
        futures = [client.submit(fit_chunk, ch, model, options, parts_dir, x64, retries=retries, pure=False,
                                 key=f"galmoss-chunk-{tag}-{ch[0].index:06d}") for ch in chunks]
        n_of = {f.key: sum(len(b.galaxies) for b in ch) for f, ch in zip(futures, chunks)}
        for fut in as_completed(futures):
            res = fut.result()
            tables.update(res)
            fitted += n_of[fut.key]
            bar.update(n_of[fut.key])
    finally:
        if own:
            client.close()
    missing = [b.index for b in batches if b.index not in tables]
    if missing:
        raise GalmossError(f"Dask returned no result for batches {missing[:10]}")
    return fitted, tables


# ----------------------------------------------------------------------------- command line

def add_arguments(parser):
    """The options of ``galmoss-jax fit`` that select a streaming (survey) run."""
    g = parser.add_argument_group("large runs (streaming, resumable; see README 'Large runs')")
    g.add_argument("--catalog", metavar="TABLE",
                   help="table, one galaxy per row: image, sigma, mask, psf paths (relative to the table), "
                        "id, zeropoint, gain, initial values by result column name")
    g.add_argument("--batch-size", type=int, metavar="B", help="galaxies per compiled batch (streaming; default 64)")
    g.add_argument("--bucket", type=int, default=16, metavar="PX",
                   help="pad stamp sides to multiples of PX (default 16)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out")
    g.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler: fit chunks of batches on its workers")
    g.add_argument("--chunk-batches", type=int, default=4, metavar="K", help="batches per Dask task (default 4)")
    g.add_argument("--retries", type=int, default=2, help="Dask retries of a failed task (default 2)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def wants_survey(args) -> bool:
    return bool(args.catalog or args.batch_size or args.resume or args.scheduler)


def cmd_fit_survey(args, model, init, options: FitOptions, table_params):
    """``galmoss-jax fit`` in streaming mode (called by :func:`galmoss_jax.cli.cmd_fit` with the
    model, the ``--free NAME=VALUE`` starts and the same :class:`FitOptions` as an in-memory
    fit)."""
    from .io import read_table

    if args.imgblock:
        raise ParameterError("--imgblock is not available in a streaming run (--catalog/--batch-size/--resume); "
                             "write image blocks of chosen galaxies with an in-memory fit")
    if (args.catalog is None) == (args.image is None):
        raise ParameterError("give either an IMAGE cube or --catalog TABLE")
    if args.catalog:
        if args.init:
            raise ParameterError("--init: with --catalog give initial values as catalogue columns (e.g. sersic_r_e)")
        if args.sigma or args.mask:
            raise ParameterError("--sigma and --mask name files of one cube; with --catalog give them as columns")
        gals = catalog_galaxies(args.catalog, model, zeropoint=args.zeropoint, gain=args.gain,
                                read_noise=args.read_noise, sky=args.sky, psf=args.psf)
        if init:  # --free NAME=VALUE: a start for every row without its own value
            base = {model.resolve(k, "--free"): v for k, v in init.items()}
            gals = [dataclasses.replace(g, init=tuple({**base, **dict(g.init)}.items())) for g in gals]
    else:
        if args.init:
            init.update(table_params(model, read_table(args.init, name="--init"), "--init"))
        init = {model.resolve(k, "--init"): v for k, v in init.items()}
        gals = cube_galaxies(args.image, sigma=args.sigma, mask=args.mask, psf=args.psf, init=init,
                             zeropoint=args.zeropoint, gain=args.gain, read_noise=args.read_noise, sky=args.sky)
    table, summary = fit_survey(gals, model, options=options, out=args.out, batch_size=args.batch_size or 64,
                                bucket=args.bucket, resume=args.resume, overwrite=args.overwrite,
                                client=args.scheduler, chunk_batches=args.chunk_batches, retries=args.retries,
                                quiet=args.quiet)
    print(summary)
    print(f"-> {args.out}")
    return table, summary
