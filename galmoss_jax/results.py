"""Fit results: a pytree with one row per galaxy, and its table form (DESIGN.md A columns)."""
from __future__ import annotations

import os

import equinox as eqx
import numpy as np

from ._errors import OutputFileError
from ._status import status_message

_FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".ecsv": "ascii.ecsv", ".csv": "ascii.csv",
            ".parquet": "parquet"}


class FitResult(eqx.Module):
    """Best-fit parameters, errors and diagnostics of a batch of fits (leading axis G).

    Attributes:
        values: ``{"comp.param": (G,) array}`` for every parameter (fixed and tied included),
            physical units; ``q <= 1`` and ``pa`` in (-90, 90] degrees.
        covariance: ``(G, P, P)`` covariance of the free parameters (order ``free_names``),
            physical units; NaN where it is undefined.
        chi2: the statistic at the optimum (for ``stat='cash'`` the Cash C).
        chi2_nu: ``chi2 / dof``.
        dof: used pixels minus free parameters.
        n_iter: solver iterations.
        status: :class:`galmoss_jax.Status` code per galaxy (0 = success); ``status_msg``
            gives the messages.
        samples: bootstrap refits ``{"comp.param": (G, N)}`` of the free parameters (and
            ``"status"``), when ``fit(..., errors="bootstrap", keep_samples=True)``; else None.
        hessian_covariance: with bootstrap errors, the Gauss-Newton covariance of the same
            fits (``covariance`` then holds the bootstrap one); else None.
        mask: (G, H, W) the pixels each fit used (True = used): the given mask less the pixels
            the fit dropped (non-finite data, sigma <= 0, neighbours); None when unknown.  A
            multiband fit has ``{band: (G, H, W)}``.
        chi2_band: for a multiband fit, ``{band: (G,)}`` the statistic of each band (they sum
            to ``chi2``); else None.
    """

    values: dict
    covariance: np.ndarray
    chi2: np.ndarray
    chi2_nu: np.ndarray
    dof: np.ndarray
    n_iter: np.ndarray
    status: np.ndarray
    model: object = eqx.field(static=True)
    free_names: tuple = eqx.field(static=True)
    stat: str = eqx.field(static=True)
    batched: bool = eqx.field(static=True)
    samples: dict | None = None
    hessian_covariance: np.ndarray | None = None
    mask: np.ndarray | dict | None = None
    chi2_band: dict | None = None

    @property
    def errors(self) -> dict:
        """1-sigma errors ``{"comp.param": (G,)}``: sqrt of the covariance diagonal; 0 for fixed
        parameters, the source's error for tied ones, and for a band's value interpolated in
        wavelength (a multiband fit) the error of that linear combination of the fitted ones."""
        G = self.status.shape[0]
        out = {n: np.zeros(G) for n in self.values}
        diag = np.sqrt(np.clip(np.diagonal(self.covariance, axis1=1, axis2=2), 0, None)) if self.free_names else None
        for i, n in enumerate(self.free_names):
            out[n] = np.where(np.isfinite(self.covariance[:, i, i]), diag[:, i], np.nan)
        layout = self.model.layout
        for n, _ in layout.derived:
            idx, w = zip(*layout.derived_weights(n))
            w = np.asarray(w)
            sub = self.covariance[:, list(idx)][:, :, list(idx)]
            out[n] = np.sqrt(np.clip(np.einsum("i,gij,j->g", w, sub, w), 0, None))
        for a, b in self.model.tied:
            out[a] = out[b]
        return out

    @property
    def status_msg(self) -> list[str]:
        return [status_message(s) for s in self.status]

    def __getitem__(self, name: str) -> np.ndarray:
        """Best-fit value(s) of a parameter, by full, bare (one component) or column name."""
        v = self.values[self.model.resolve(name)]
        return v if self.batched else v[0]

    def to_table(self, ids=None):
        """An :class:`astropy.table.Table`: ``id``, ``comp_param`` and ``comp_param_err`` for
        every parameter, ``chi2``, ``chi2_nu``, ``dof``, ``n_iter``, ``status``, ``status_msg``."""
        from astropy.table import Table

        G = self.status.shape[0]
        t = Table()
        t["id"] = np.arange(G) if ids is None else np.asarray(ids)
        errs = self.errors
        for n in self.model.param_names:
            col = column_name(n)
            unit = _unit(self.model.param(n).unit)
            t[col] = np.asarray(self.values[n], float)
            t[col + "_err"] = np.asarray(errs[n], float)
            if unit is not None:
                t[col].unit = unit
                t[col + "_err"].unit = unit
        t["chi2"] = self.chi2.astype(float)
        for b, v in (self.chi2_band or {}).items():
            t[f"chi2_{b}"] = np.asarray(v, float)
        t["chi2_nu"] = self.chi2_nu.astype(float)
        t["dof"] = self.dof.astype(np.int64)
        t["n_iter"] = self.n_iter.astype(np.int32)
        t["status"] = self.status.astype(np.int32)
        t["status_msg"] = self.status_msg
        t.meta["model"] = self.model.spec_string
        t.meta["stat"] = self.stat
        t.meta["free"] = ",".join(column_name(n) for n in self.free_names)
        return t


def column_name(name: str) -> str:
    """Table column of a parameter: ``"bulge.r_e"`` -> ``"bulge_r_e"``."""
    return name.replace(".", "_", 1)


def _unit(u: str):
    from astropy import units

    if not u:
        return None
    try:
        return units.Unit(u.replace("pixel", "pix").replace("image units", "adu"), parse_strict="raise")
    except ValueError:
        return None


def check_table_output(path, *, overwrite: bool = False, name: str = "output") -> str:
    """Refuse, before any work, a table output with an unknown extension or that cannot be
    written (see :func:`galmoss_jax.io.check_output`)."""
    from .io import check_output

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS:
        raise OutputFileError(f"{name} {path!r}: unknown extension {ext!r}; use one of {', '.join(sorted(_FORMATS))}")
    return check_output(path, overwrite=overwrite, name=name)


def write_table(table, path, *, overwrite: bool = False, name: str = "output"):
    """Write a table, format chosen by extension (.fits, .ecsv, .csv, .parquet), atomically:
    the file appears complete or not at all (:func:`galmoss_jax.io.write_atomic`)."""
    from .io import write_atomic

    path = check_table_output(path, overwrite=overwrite, name=name)
    ext = os.path.splitext(path)[1].lower()

    def write(tmp):
        try:
            if ext == ".csv":
                _write_csv(table, tmp)
            else:
                table.write(tmp, format=_FORMATS[ext], overwrite=True)
        except ImportError as e:
            raise OutputFileError(f"{name} {path!r}: writing {ext} needs an optional package ({e})") from None

    write_atomic([(path, write)], overwrite=overwrite, name=name)


def _write_csv(table, path):
    """Plain CSV as Astropy writes it, with every value of a text column quoted: CSV has no
    types, and :func:`galmoss_jax.io.read_table` reads a column with quoted values as text, so
    ``"00"``, ``"1e5"`` or ``"nan"`` come back as strings, not numbers.  Masked values stay
    empty and unquoted.  Any CSV reader takes the file as it is (quotes are standard CSV)."""
    import csv
    import io

    buf = io.StringIO()
    table.write(buf, format="ascii.csv")
    rows = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    header = rows[0] if rows else []
    text = [j for j, c in enumerate(header)
            if c in table.colnames and getattr(table[c], "dtype", np.dtype(float)).kind in "US"]
    if len(rows) - 1 != len(table) or not text:     # nothing to quote (or a layout not one row a line)
        out = buf.getvalue()
    else:
        masked = {j: np.ma.getmaskarray(table[header[j]]) for j in text}

        def quote(s):
            return '"' + s.replace('"', '""') + '"'

        def minimal(s):
            return quote(s) if any(ch in s for ch in ',"\r\n') else s

        lines = [",".join(minimal(s) for s in header)]
        for i, row in enumerate(rows[1:]):
            lines.append(",".join(quote(s) if j in masked and not masked[j][i] else minimal(s)
                                  for j, s in enumerate(row)))
        out = "\n".join(lines) + "\n"
    with open(path, "w", newline="") as f:
        f.write(out)
