"""FITS and table input/output (Astropy), with checks that name the offending file."""
from __future__ import annotations

import functools
import os
import uuid

import numpy as np

from ._errors import DataError, InputFileError, OutputFileError, ParameterError, ShapeError


def read_image(path, *, name: str = "image", allow_cube: bool = True) -> np.ndarray:
    """Read the first image HDU of a FITS file as float64: (H, W), or (G, H, W) if allowed."""
    from astropy.io import fits

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"{name}: file {path!r} does not exist")
    try:
        with fits.open(path, memmap=False) as hdul:
            data = next((h.data for h in hdul if getattr(h, "data", None) is not None and h.is_image), None)
    except (OSError, ValueError, TypeError) as e:
        raise InputFileError(f"{name}: {path!r} is not a readable FITS file ({e})") from None
    if data is None:
        raise InputFileError(f"{name}: {path!r} has no image data")
    if not np.issubdtype(data.dtype, np.number):
        raise DataError(f"{name}: {path!r} does not hold numeric pixels")
    a = np.asarray(data, dtype=float)
    ndims = (2, 3) if allow_cube else (2,)
    if a.ndim not in ndims:
        want = "a 2-D image or a (G, H, W) cube" if allow_cube else "a 2-D image"
        raise ShapeError(f"{name}: {path!r} must be {want}, got shape {a.shape}")
    if a.size == 0:
        raise ShapeError(f"{name}: {path!r} is empty")
    return a


def read_mask(path, *, name: str = "mask", keep_labels=(0,)) -> np.ndarray:
    """Read a GALFIT/Imfit bad-pixel mask (non-zero = bad) or a segmentation map as a boolean
    array with True = pixel used.  ``keep_labels``: values that mark usable pixels (0 = sky; add
    the target's label for a segmentation map)."""
    from ._noise import mask_from_bad_pixels

    return mask_from_bad_pixels(read_image(path, name=name), keep_labels)


def read_header_value(path, keys, default=None):
    """First of ``keys`` found in the primary/first image header of a FITS file."""
    from astropy.io import fits

    try:
        with fits.open(os.fspath(path), memmap=False) as hdul:
            for h in hdul:
                for k in keys:
                    if k in h.header:
                        return h.header[k]
    except (OSError, ValueError):
        return default
    return default


def read_table(path, *, name: str = "table"):
    """Read a FITS, ECSV, CSV or Parquet table into an :class:`astropy.table.Table` (text
    columns as ``str`` whatever the format).

    CSV carries no types, so a column is read as text when any of its values is quoted
    (``"00"``, ``"1e5"`` or ``"nan"`` stay strings) and otherwise typed as Astropy infers it
    (``00`` unquoted is the integer 0).  :func:`galmoss_jax.results.write_table` quotes every
    value of a text column, so its CSV files read back with their types (R's ``write.csv`` and
    pandas with ``QUOTE_NONNUMERIC`` quote text the same way); plain CSV files from other tools
    read as before.  A file that quotes every field, header included (``QUOTE_ALL``), says nothing
    about types that way: its columns are typed as Astropy infers them.
    """
    from astropy.io.ascii import convert_numpy
    from astropy.table import Table

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"{name}: file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    fmt = {".fits": "fits", ".fit": "fits", ".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".parquet": "parquet"}.get(ext)
    try:
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
        if fmt == "ascii.csv":
            quoted = [table.colnames[j] for j in sorted(_csv_quoted_columns(path)) if j < len(table.colnames)]
            if any(table[c].dtype.kind not in "US" for c in quoted):
                # read again only to take those columns as text: the others keep the first
                # read's types (converters turn off Astropy's fast reader, which also reads bools)
                text = Table.read(path, format=fmt, converters={c: [convert_numpy(str)] for c in table.colnames})
                for c in quoted:
                    table[c] = text[c]
    except Exception as e:  # astropy raises many types for malformed files
        raise InputFileError(f"{name}: cannot read {path!r} as a table ({e})") from None
    table.convert_bytestring_to_unicode()  # FITS text columns come back as bytes
    return table


def _csv_quoted_columns(path) -> set:
    """Indices of the columns of a CSV file (RFC 4180: ``,`` between fields, ``"`` around a
    field, ``""`` for a quote inside one) that have a quoted value below the header; empty
    when every field of the file, header included, is quoted.  Vectorised over the bytes: a
    character lies inside a quoted field when an odd number of quotes precede it (a doubled
    quote changes nothing), so the separators are the commas and newlines with an even count."""
    with open(path, "rb") as f:
        b = np.frombuffer(f.read(), np.uint8)
    quote = b == ord('"')
    if not quote.any():
        return set()
    outside = (np.cumsum(quote, dtype=np.uint8) & 1) == 0     # uint8 wraps mod 256: parity kept
    comma = np.flatnonzero((b == ord(",")) & outside)
    newline = np.flatnonzero((b == ord("\n")) & outside)
    starts = np.concatenate(([0], comma + 1, newline + 1))
    starts = np.sort(starts[starts < b.size])
    first = b[starts]
    # blank lines (Astropy skips them) are not fields
    line_start = (starts == 0) | (b[np.maximum(starts - 1, 0)] == ord("\n"))
    keep = ~(line_start & ((first == ord("\n")) | (first == ord("\r"))))
    starts, first, line_start = starts[keep], first[keep], line_start[keep]
    if starts.size == 0:
        return set()
    row = np.cumsum(line_start) - 1                           # 0 = header
    col = np.arange(starts.size) - np.flatnonzero(line_start)[row]
    is_quoted = first == ord('"')
    if is_quoted.all():
        return set()
    return {int(c) for c in np.unique(col[is_quoted & (row > 0)])}


def check_output(path, *, overwrite: bool = False, name: str = "output") -> str:
    """Refuse an output path that cannot be written, before any work is done: an existing file
    (unless ``overwrite``), a directory, or a missing parent directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OutputFileError(f"{name}: {path!r} is a directory; expected a file name")
    if os.path.exists(path) and not overwrite:
        raise OutputFileError(f"{name}: {path!r} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputFileError(f"{name}: output directory {directory!r} does not exist")
    return path


def write_atomic(outputs, *, overwrite: bool = False, name: str = "output"):
    """Write files so that they appear complete or not at all.

    ``outputs``: ``[(path, write), ...]`` where ``write(tmp)`` writes the file to the path it
    is given.  Every file is first written to a temporary file next to its target and synced
    to disk; only when all of them succeeded are they renamed into place (``os.replace``,
    atomic).  A failure (full disk, no permission, ...) raises :class:`OutputFileError` naming
    the path and leaves no temporary file and no new output.
    """
    checked = [(check_output(p, overwrite=overwrite, name=name), w) for p, w in outputs]
    temps = []
    current = None
    try:
        for path, write in checked:
            current = path
            directory, base = os.path.split(os.path.abspath(path))
            # os.open rather than tempfile.mkstemp: the file gets the ordinary permissions
            # (0o666 less the umask) instead of mkstemp's owner-only 0o600
            tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}-{base}")
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            temps.append(tmp)
            write(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        for (path, _), tmp in zip(checked, temps):
            current = path
            os.replace(tmp, path)
        temps = []
    except OSError as e:
        raise OutputFileError(f"{name}: cannot write {current!r} ({e.strerror or e})") from e
    finally:
        for tmp in temps:
            try:
                os.remove(tmp)
            except OSError:
                pass


def write_fits_atomic(hdul, path, *, overwrite: bool = False, name: str = "output"):
    """Write an HDUList so that the file appears complete or not at all (:func:`write_atomic`)."""
    write_atomic([(path, lambda tmp: hdul.writeto(tmp, overwrite=True))], overwrite=overwrite, name=name)


def imgblock_paths(directory, ids, *, overwrite: bool = False, name: str = "imgblock"):
    """Paths of the image blocks ``imgblock_<id>.fits`` in ``directory``, checked before any
    work is done: ``directory`` must be a directory or not exist yet (it is created when the
    blocks are written), and no block may exist unless ``overwrite``."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise OutputFileError(f"{name}: {directory!r} exists and is not a directory")
    paths = [os.path.join(directory, f"imgblock_{int(i)}.fits") for i in ids]
    if not overwrite:
        exist = [p for p in paths if os.path.exists(p)]
        if exist:
            raise OutputFileError(f"{name}: {len(exist)} image blocks exist already (first {exist[0]!r}); "
                                  "pass overwrite=True (CLI: --overwrite) to replace them")
    return paths


def write_image(image, path, *, header=None, overwrite: bool = False, name: str = "output"):
    """Write an image or cube to a FITS file (atomically)."""
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.asarray(image), header=header)
    write_fits_atomic(fits.HDUList([hdu]), path, overwrite=overwrite, name=name)


def _header_float(v) -> float:
    """A value for a FITS header, which cannot hold NaN or inf: those become -1 (the row's
    STATUS says why)."""
    v = float(v)
    return v if np.isfinite(v) else -1.0


def _block_images(model, values, shape, psf, zeropoint, oversample):
    """The model images of one band's blocks, (G, H, W), and each component's rendered alone
    (convolved where the profile is)."""
    from .model import Model, render

    full = np.asarray(render(model, values, shape, psf=psf, zeropoint=zeropoint, oversample=oversample))
    comps = {}
    for cname, spec in model.components:
        if spec.kind == "point" and psf is None:
            continue
        sub = Model({cname: spec})
        pv = {k: v for k, v in values.items() if k.startswith(cname + ".")}
        comps[cname] = np.asarray(render(sub, pv, shape, psf=psf if spec.kind != "sky" else None,
                                         zeropoint=zeropoint, oversample=oversample))
    return full, comps


def _block_header(spec_string, chi2, chi2_nu, status, names, values, errs, g, extra=()):
    """The header of galaxy ``g``'s image block: ``MODEL`` (the model's spec string), the
    ``extra`` (key, value) cards, ``CHI2``, ``CHI2NU``, ``STATUS`` and each parameter of
    ``names`` with its error (``COMP_PARAM``, ``COMP_PARAM_ERR``)."""
    from astropy.io import fits

    hdr = fits.Header()
    hdr["MODEL"] = spec_string
    for k, v in extra:
        hdr[k] = v
    hdr["CHI2"] = _header_float(chi2)
    hdr["CHI2NU"] = _header_float(chi2_nu)
    hdr["STATUS"] = int(status)
    for n in names:
        key = n.replace(".", "_", 1).upper()
        hdr[f"HIERARCH {key}"] = _header_float(values[n][g])
        hdr[f"HIERARCH {key}_ERR"] = _header_float(errs[n][g])
    return hdr


def write_imgblocks(result, data, sigma, mask, directory, *, psf=None, zeropoint=None, oversample=1,
                    ids=None, overwrite: bool = False):
    """One multi-extension FITS per galaxy, ``directory/imgblock_<id>.fits``: DATA, MODEL,
    RESIDUAL, SIGMA, MASK and one extension per component (each rendered alone, convolved
    where the profile is); the best-fit parameters and errors go in the MODEL header
    (``COMP_PARAM`` keys).  MASK (1 = used) and RESIDUAL are those of the fit: the mask the
    fit used (``result.mask``: the given mask less the pixels it dropped) wherever the result
    has it, else ``mask``.  All blocks are written or none (:func:`write_atomic`); existing
    blocks are refused before any work unless ``overwrite``.

    A multiband result takes ``data``, ``sigma``, ``psf`` and ``zeropoint`` as they were given
    to the fit (mappings by band, or one value for all) and writes every band's extensions
    with the band's name appended (``DATA_G``, ``MODEL_G``, ``COMP_SERSIC_G``, ...); each
    ``MODEL_<band>`` header holds that band's one-band parameters (read one band with
    :func:`galmoss_jax.plot.read_imgblock` ``(path, band=...)``), the primary header every
    joint parameter, ``BANDS`` and ``CHI2_<band>``."""
    from collections.abc import Mapping

    from astropy.io import fits

    if isinstance(data, Mapping):
        return _write_band_imgblocks(result, data, sigma, mask, directory, psf=psf, zeropoint=zeropoint,
                                     oversample=oversample, ids=ids, overwrite=overwrite)
    data = np.asarray(data, float)
    if getattr(result, "mask", None) is not None:
        mask = result.mask if data.ndim == 3 else result.mask[0]
    if data.ndim == 2:
        data, sigma, mask = data[None], np.asarray(sigma)[None], np.asarray(mask)[None]
    G = data.shape[0]
    model = result.model
    values = {k: np.asarray(v) for k, v in result.values.items()}
    errs = result.errors
    full, comps = _block_images(model, values, data.shape[1:], psf, zeropoint, oversample)
    table = result.to_table(ids)
    paths = imgblock_paths(directory, table["id"], overwrite=overwrite)
    _make_dir(directory)
    outputs = []
    for g in range(G):
        hdr = _block_header(model.spec_string, result.chi2[g], result.chi2_nu[g], result.status[g],
                            model.param_names, values, errs, g)
        hdus = [fits.PrimaryHDU(header=hdr),
                fits.ImageHDU(data[g], name="DATA"),
                fits.ImageHDU(full[g], header=hdr, name="MODEL"),
                fits.ImageHDU(np.where(mask[g], data[g] - full[g], 0.0), name="RESIDUAL"),
                fits.ImageHDU(np.asarray(sigma[g], float), name="SIGMA"),
                fits.ImageHDU(np.asarray(mask[g]).astype(np.uint8), name="MASK")]
        for cname, img in comps.items():
            hdus.append(fits.ImageHDU(img[g], name=f"COMP_{cname.upper()}"[:68]))
        outputs.append((paths[g], functools.partial(fits.HDUList(hdus).writeto, overwrite=True)))
    write_atomic(outputs, overwrite=overwrite, name="imgblock")
    return paths


def _make_dir(directory):
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise OutputFileError(f"imgblock: cannot create directory {os.fspath(directory)!r} ({e.strerror or e})") from e


def _write_band_imgblocks(result, data, sigma, mask, directory, *, psf, zeropoint, oversample, ids, overwrite):
    """:func:`write_imgblocks` of a multiband result (its docstring)."""
    from astropy.io import fits

    from ._bands import per_band

    bm = result.model
    bands = bm.bands
    if tuple(data) != tuple(bands):
        raise ShapeError(f"data: the result's bands are {list(bands)}, got {list(data)}")
    sigma, psf, zeropoint = (per_band(v, bands, n) for v, n in ((sigma, "sigma"), (psf, "psf"),
                                                                   (zeropoint, "zeropoint")))
    values = {k: np.asarray(v) for k, v in result.values.items()}
    errs = result.errors
    one = bm.base.without_bands()
    table = result.to_table(ids)
    paths = imgblock_paths(directory, table["id"], overwrite=overwrite)
    G = int(result.status.shape[0])
    per = {}
    for k, b in enumerate(bands):
        d = np.asarray(data[b], float)
        d = d[None] if d.ndim == 2 else d
        m = np.asarray(result.mask[b]) if result.mask is not None else \
            np.broadcast_to(np.ones(d.shape[1:], bool) if mask is None else np.asarray(per_band(mask, bands, "mask")[b]),
                            d.shape)
        m = m.reshape(d.shape)
        pk = bm.band_params(values, k)
        ek = {n: errs[j] for n, j in bm.per_band[k]}
        full, comps = _block_images(one, pk, d.shape[1:], psf[b], zeropoint[b], oversample)
        if sigma[b] is None:
            raise ParameterError(f"sigma[{b!r}]: an image block needs the sigma map the fit used "
                                 "(for sigma from the data: galmoss_jax.sigma_from_data)")
        s = np.broadcast_to(np.asarray(sigma[b], float).reshape((-1,) + d.shape[1:]), d.shape)
        per[b] = (d, m, s, pk, ek, full, comps)
    _make_dir(directory)
    outputs = []
    for g in range(G):
        hdr = _block_header(bm.base.spec_string, result.chi2[g], result.chi2_nu[g], result.status[g],
                            bm.param_names, values, errs, g, [("BANDS", ",".join(bands))])
        for b in bands:
            hdr[f"HIERARCH CHI2_{b.upper()}"] = _header_float(result.chi2_band[b][g])
        hdus = [fits.PrimaryHDU(header=hdr)]
        for b in bands:
            d, m, s, pk, ek, full, comps = per[b]
            bh = _block_header(bm.base.spec_string, result.chi2_band[b][g], result.chi2_nu[g], result.status[g],
                               one.param_names, pk, ek, g, [("BAND", b)])
            B = b.upper()
            hdus += [fits.ImageHDU(d[g], name=f"DATA_{B}"), fits.ImageHDU(full[g], header=bh, name=f"MODEL_{B}"),
                     fits.ImageHDU(np.where(m[g], d[g] - full[g], 0.0), name=f"RESIDUAL_{B}")]
            hdus.append(fits.ImageHDU(s[g], name=f"SIGMA_{B}"))
            hdus.append(fits.ImageHDU(m[g].astype(np.uint8), name=f"MASK_{B}"))
            for cname, img in comps.items():
                hdus.append(fits.ImageHDU(img[g], name=f"COMP_{cname.upper()}_{B}"[:68]))
        outputs.append((paths[g], functools.partial(fits.HDUList(hdus).writeto, overwrite=True)))
    write_atomic(outputs, overwrite=overwrite, name="imgblock")
    return paths
