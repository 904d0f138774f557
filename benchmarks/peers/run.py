"""Side-by-side benchmark of galmoss_jax against GALMOSS, Imfit (pyimfit) and AstroPhot.

Every tool found installed (``importlib.util.find_spec``) fits, in its own subprocess (so its
import and start-up are its own, and torch and JAX never share a process):

1. a seeded set of GalSim single-Sérsic galaxies (``sims.py``: SDSS-like 128x128 stamps, Moffat
   PSF FWHM 3.5 px beta 3.5, sky + Poisson noise, sigma maps, S/N 20-500, r_e 1-20 px,
   n 0.5-6, q 0.25-1) and a set of bulge + disk galaxies, each from two start sets given to
   every tool alike: the truth perturbed, and a poor start (n = 1, r_e = 5 px, q = 0.95,
   pa = 0, centre at the stamp centre, mag from the stamp's total flux);
2. the three SDSS r-band galaxies bundled with galmoss_jax (zp 22.5), single Sérsic, from one
   moment-based start (``galmoss_jax.init.guess_initial``) given to all.

Each tool is configured as its documentation recommends (``tools.py``); conventions are
converted by ``conventions.py`` and verified by ``check_conventions.py``.  Slow tools fit the
first ``--n-slow`` single-Sérsic galaxies (GALMOSS and AstroPhot by default) and
``--slow-bd`` tools the first ``--n-bd-slow`` bulge + disk galaxies (Imfit, AstroPhot, GALMOSS).

Timing: *start-up* = import + the one-off cost of the first fit (JAX tracing and compilation;
for serial tools the first galaxy's excess over the median); *gal/s* = steady-state
galaxies per second; *wall* = start-up + the set's steady time, i.e. a cold run on that set.

    PYTHONPATH=$PWD /work/venv-peers/bin/python benchmarks/peers/run.py --n 24 --n-bd 6 --n-slow 2 --n-bd-slow 2
    ... --from-raw A.pkl,B.pkl --notes notes.md   # rewrite the report from saved runs
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

TOOLS = ("galmoss_jax", "galmoss_jax_1", "imfit", "astrophot", "galmoss")   # galmoss_jax_1: starts=1
SLOW_DEFAULT = ("galmoss", "astrophot")
SDSS_NAMES = ["J092800.99+014011.9", "J100247.00+042559.8", "J162123.19+322056.4"]
SDSS_LABELS = {"J162123.19+322056.4": 2}


# ---------------------------------------------------------------------------------------------
# worker: one tool, all jobs, in this process
# ---------------------------------------------------------------------------------------------
def worker(tool, job_path, out_path, opts):
    t0 = time.perf_counter()
    import tools as T  # noqa: F401 - conventions only

    mod = importlib.import_module(T.MODULES[tool])
    if tool.startswith("galmoss_jax"):
        import galmoss_jax  # noqa: F401
    t_import = time.perf_counter() - t0
    with open(job_path, "rb") as f:
        jobs = pickle.load(f)
    results = {"t_import": t_import, "version": getattr(mod, "__version__", "?"), "file": getattr(mod, "__file__", "?")}
    for jname, job in jobs.items():
        starts = job.pop("starts")
        t1 = time.perf_counter()
        try:
            if tool == "galmoss":
                out, timing = T.fit_galmoss(job, starts, iteration=opts["galmoss_iter"],
                                            with_errors=job.get("galmoss_errors", True))
            else:
                out, timing = T.FITTERS[tool](job, starts)
            results[jname] = dict(out=out, timing=timing, wall=time.perf_counter() - t1)
        except Exception as e:  # noqa: BLE001 - report and go on with the next job
            import traceback

            traceback.print_exc()
            results[jname] = dict(error=f"{type(e).__name__}: {e}", wall=time.perf_counter() - t1)
        print(f"[{tool}] {jname}: {time.perf_counter() - t1:.1f} s", flush=True)
    with open(out_path, "wb") as f:
        pickle.dump(results, f)


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def sdss_job():
    from galmoss_jax.init import guess_initial
    from galmoss_jax.io import read_image, read_mask
    from galmoss_jax.model import Model

    here = os.path.join(ROOT, "galmoss_jax", "data", "sdss")
    data = np.stack([read_image(os.path.join(here, f"{n}_image.fits")) for n in SDSS_NAMES]).astype(float)
    sigma = np.stack([read_image(os.path.join(here, f"{n}_sigma.fits")) for n in SDSS_NAMES]).astype(float)
    psf = np.stack([read_image(os.path.join(here, f"{n}_psf.fits")) for n in SDSS_NAMES]).astype(float)
    psf /= psf.sum(axis=(1, 2), keepdims=True)
    mask = np.stack([read_mask(os.path.join(here, f"{n}_mask.fits"), keep_labels=(0, SDSS_LABELS.get(n, 1)))
                     for n in SDSS_NAMES])
    zp = 22.5
    m = Model("sersic")
    guesses = [guess_initial(m, data[g], mask[g], zp) for g in range(len(SDSS_NAMES))]
    start = {k: np.array([float(gs[f"sersic.{k}"]) for gs in guesses]) for k in ("x0", "y0", "mag", "r_e", "n", "q", "pa")}
    start["q"] = np.minimum(start["q"], 0.95)
    return dict(data=data, sigma=sigma, mask=mask, psf=psf, zp=zp, kind="sersic", starts={"moments": start})


def subset(job, n):
    out = {k: (v[:n] if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == job["data"].shape[0] else v)
           for k, v in job.items() if k not in ("starts", "truth", "snr")}
    out["starts"] = {s: {k: v[:n] for k, v in d.items()} for s, d in job["starts"].items()}
    return out


def build_jobs(args):
    import sims

    t = time.perf_counter()
    sets = {}
    for kind, n, seed in (("sersic", args.n, args.seed), ("bd", args.n_bd, args.seed + 1)):
        if n <= 0:
            continue
        s = sims.make_set(kind, n, seed)
        s["starts"] = {"perturbed": sims.perturbed_start(s["truth"], kind, seed + 100),
                       "poor": sims.poor_start(s["data"], kind, s["zp"])}
        sets[kind] = s
    counts = ", ".join(f"{k}: {len(v['data'])}" for k, v in sets.items())
    print(f"simulated {counts} galaxies in {time.perf_counter() - t:.1f} s", flush=True)
    # GALMOSS's covariance step (vmap(jacrev) over every pixel) costs minutes per galaxy on this
    # CPU: only with --galmoss-errors, and then on the single-Sérsic set only
    for name in sets:
        sets[name]["galmoss_errors"] = bool(args.galmoss_errors) and name == "sersic"
    if not args.skip_sdss:
        sets["sdss"] = sdss_job()
        sets["sdss"]["galmoss_errors"] = False
    return sets


def run_tool(tool, sets, n_per_set, tmp, args):
    jobs = {name: subset(s, n_per_set.get(name, len(s["data"]))) for name, s in sets.items()}
    jp, op = os.path.join(tmp, f"{tool}_job.pkl"), os.path.join(tmp, f"{tool}_out.pkl")
    with open(jp, "wb") as f:
        pickle.dump(jobs, f)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", tool, "--job", jp, "--out-pkl", op,
           "--galmoss-iter", str(args.galmoss_iter)]
    t = time.perf_counter()
    # cwd: the temporary folder, so that log files some tools write (AstroPhot.log) stay out of the tree
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "about to call" not in ln]
    print("\n".join(f"    {ln}" for ln in lines[-15:] if ln.strip()), flush=True)
    if proc.returncode != 0 or not os.path.exists(op):
        return dict(error=f"worker exited {proc.returncode}", process_wall=wall)
    with open(op, "rb") as f:
        res = pickle.load(f)
    res["process_wall"] = wall
    res["n"] = n_per_set
    return res


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def timings(tool, res, sname, set_name, first_set):
    """(startup s, steady gal/s, wall s) for one tool, set and start set."""
    r = res[set_name]
    out = r["out"][sname]
    G = len(out["chi2_nu"])
    tim = r["timing"]
    startup = res["t_import"]
    if tool.startswith("galmoss_jax"):
        if sname == list(r["out"])[0]:
            steady = tim[f"{sname}_call1"]
            startup += max(tim[f"{sname}_call0"] - steady, 0.0)
        else:
            steady = tim[f"{sname}_call0"]
            # compiled already for this shape: no start-up beyond the first start set's
            first = list(r["out"])[0]
            startup += max(tim[f"{first}_call0"] - tim[f"{first}_call1"], 0.0)
    elif tool in ("imfit", "astrophot"):
        secs = np.asarray(tim[sname], float)
        first = list(r["out"])[0]
        fs = np.asarray(tim[first], float)
        excess = max(fs[0] - np.median(fs), 0.0)
        startup += excess
        if sname == first:
            secs = secs.copy()
            secs[0] = np.median(secs)
        steady = float(np.sum(secs))
    else:
        steady = float(tim[sname])
    return startup, G / steady, startup + steady


def sersic_metrics(truth, out, n):
    t = {k: np.asarray(v[:n], float) for k, v in truth.items()}
    v, e = out["values"], out["errors"]
    fin = np.all([np.isfinite(v[k]) for k in ("mag", "r_e", "n", "q", "pa")], axis=0)
    dmag = np.abs(v["mag"] - t["mag"])
    dre = np.abs(v["r_e"] - t["r_e"]) / t["r_e"]
    dn = np.abs(v["n"] - t["n"])
    dq = np.abs(v["q"] - t["q"])
    from conventions import pa_distance

    dpa = pa_distance(v["pa"], t["pa"])
    elong = t["q"] < 0.8
    cat = ~fin | (dmag > 0.5) | (dre > 0.5) | (np.abs(v["n"] - t["n"]) / t["n"] > 0.5)
    cover, cnt = 0, 0
    for k in ("x0", "y0", "r_e", "n", "q", "pa"):
        d = pa_distance(v[k], t[k]) if k == "pa" else np.abs(v[k] - t[k])
        use = np.isfinite(e[k]) & (e[k] > 0) & np.isfinite(d) & (elong if k == "pa" else True)
        cover += int(np.sum(d[use] <= e[k][use]))
        cnt += int(np.sum(use))
    usem = np.isfinite(e["mag"]) & (e["mag"] > 0) & np.isfinite(dmag)
    cov_mag = float(np.mean(dmag[usem] <= e["mag"][usem])) if usem.any() else np.nan

    def mp(x, m=None):
        x = x[fin if m is None else fin & m]
        return (float(np.median(x)), float(np.percentile(x, 90))) if len(x) else (np.nan, np.nan)

    return dict(N=int(len(fin)), mag=mp(dmag), r_e=mp(dre), n=mp(dn), q=mp(dq), pa=mp(dpa, elong),
                cat=float(np.mean(cat)), cover=cover / cnt if cnt else np.nan, cover_n=cnt, cover_mag=cov_mag,
                chi2_nu=float(np.nanmedian(out["chi2_nu"])), n_iter=(float(np.nanmedian(out["n_iter"])),
                                                                    float(np.nanmax(out["n_iter"]))))


def bd_metrics(truth, out, n):
    t = {k: np.asarray(v[:n], float) for k, v in truth.items()}
    v, e = out["values"], out["errors"]
    fin = np.all([np.isfinite(v[k]) for k in ("b_mag", "d_mag", "b_r_e", "d_r_s", "b_n")], axis=0)

    def tot(a, b):
        return -2.5 * np.log10(10 ** (-0.4 * a) + 10 ** (-0.4 * b))
    dtot = np.abs(tot(v["b_mag"], v["d_mag"]) - tot(t["b_mag"], t["d_mag"]))
    bt = lambda b, d: 1.0 / (1.0 + 10 ** (-0.4 * (d - b)))  # noqa: E731
    dbt = np.abs(bt(v["b_mag"], v["d_mag"]) - bt(t["b_mag"], t["d_mag"]))
    dbre = np.abs(v["b_r_e"] - t["b_r_e"]) / t["b_r_e"]
    drs = np.abs(v["d_r_s"] - t["d_r_s"]) / t["d_r_s"]
    dbn = np.abs(v["b_n"] - t["b_n"])
    cat = ~fin | (dtot > 0.5) | (drs > 0.5) | (dbt > 0.3)
    cover, cnt = 0, 0
    for k in ("x0", "y0", "b_r_e", "b_n", "b_q", "d_r_s", "d_q"):
        d = np.abs(v[k] - t[k])
        use = np.isfinite(e[k]) & (e[k] > 0) & np.isfinite(d)
        cover += int(np.sum(d[use] <= e[k][use]))
        cnt += int(np.sum(use))

    def mp(x):
        x = x[fin]
        return (float(np.median(x)), float(np.percentile(x, 90))) if len(x) else (np.nan, np.nan)

    return dict(N=int(len(fin)), tot=mp(dtot), bt=mp(dbt), b_r_e=mp(dbre), d_r_s=mp(drs), b_n=mp(dbn),
                cat=float(np.mean(cat)), cover=cover / cnt if cnt else np.nan, cover_n=cnt,
                chi2_nu=float(np.nanmedian(out["chi2_nu"])), n_iter=(float(np.nanmedian(out["n_iter"])),
                                                                    float(np.nanmax(out["n_iter"]))))


def common_chi2(job, values):
    """chi2_nu of each tool's best-fit Sérsic evaluated by one renderer (galmoss_jax's), on the
    same pixels and sigma: a yardstick that does not depend on each tool's own model."""
    import galmoss_jax as gj

    G = len(job["data"])
    p = {f"sersic.{k}": np.asarray(values[k], float) for k in ("x0", "y0", "mag", "r_e", "n", "q", "pa")}
    ok = np.all([np.isfinite(v) for v in p.values()], axis=0)
    p = {k: np.where(ok, v, 1.0 if k.endswith(("q", "n", "r_e")) else 0.0) for k, v in p.items()}
    img = np.asarray(gj.render("sersic", p, job["data"].shape[1:], psf=job["psf"], zeropoint=job["zp"]), float)
    chi = (((job["data"] - img) / job["sigma"]) ** 2 * job["mask"]).reshape(G, -1).sum(axis=1)
    dof = job["mask"].reshape(G, -1).sum(axis=1) - 7
    return np.where(ok, chi / dof, np.nan)


# ---------------------------------------------------------------------------------------------
def fmt(x, d=3):
    if isinstance(x, tuple):
        return " / ".join(fmt(v, d) for v in x)
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{d}g}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="single-Sérsic galaxies (fast tools)")
    ap.add_argument("--n-bd", type=int, default=None, help="bulge + disk galaxies (default n // 2)")
    ap.add_argument("--n-slow", type=int, default=8, help="galaxies per set for the slow tools")
    ap.add_argument("--slow", default=",".join(SLOW_DEFAULT), help="comma-separated slow tools")
    ap.add_argument("--n-bd-slow", type=int, default=2, help="bulge + disk galaxies for the tools in --slow-bd")
    ap.add_argument("--slow-bd", default="imfit,astrophot,galmoss", help="tools slow on bulge + disk fits")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated tools to try")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--galmoss-iter", type=int, default=1500)
    ap.add_argument("--galmoss-errors", action="store_true",
                    help="run GALMOSS's covariance step (slow) on the single-Sérsic set")
    ap.add_argument("--skip-sdss", action="store_true")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--raw", help="also pickle the simulated sets and every tool's raw results here")
    ap.add_argument("--from-raw", help="only rewrite the report from --raw pickle(s), comma-separated: "
                                       "tools failed or missing in the first are taken from the others")
    ap.add_argument("--notes", help="a Markdown file appended to the report (observations of this run)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--out-pkl", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.job, args.out_pkl, {"galmoss_iter": args.galmoss_iter})
        return 0
    if args.from_raw:
        raws = []
        for path in args.from_raw.split(","):
            with open(path, "rb") as f:
                raws.append(pickle.load(f))
        raw = raws[0]
        for extra in raws[1:]:   # tools that failed or were missing in the first run, from later runs
            for tool, res in extra["results"].items():
                if tool not in raw["results"] or "error" in raw["results"][tool]:
                    res["separate_run"] = extra["cmdline"]
                    raw["results"][tool] = res
                    if tool not in raw["found"]:
                        raw["found"].append(tool)
        report = make_report(raw["args"], raw["sets"], raw["results"], raw["found"], raw["slow"], raw["cmdline"],
                             raw["load0"], raw["load1"], raw["total"])
        if args.notes:
            with open(args.notes) as f:
                report += "\n" + f.read()
        print(report)
        with open(args.results, "w") as f:
            f.write(report)
        return 0
    if args.n_bd is None:
        args.n_bd = max(args.n // 4, 1)
    t_all = time.perf_counter()
    cmdline = "PYTHONPATH=$PWD " + " ".join([os.path.relpath(sys.executable) if not sys.executable.startswith("/work/venv")
                                             else sys.executable, "benchmarks/peers/run.py"] + (argv if argv is not None else sys.argv[1:]))
    found = [t for t in args.tools.split(",") if importlib.util.find_spec(__import__("tools").MODULES[t])]
    slow = set(args.slow.split(",")) if args.slow else set()
    print(f"tools found: {found}; slow (first {args.n_slow} Sérsic galaxies): {sorted(slow & set(found))}; "
          f"slow on bulge + disk (first {args.n_bd_slow}): {args.slow_bd}", flush=True)
    load0 = os.getloadavg()
    sets = build_jobs(args)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        slow_bd = set(args.slow_bd.split(",")) if args.slow_bd else set()
        for tool in found:
            n = {"sersic": min(args.n_slow, args.n) if tool in slow else args.n,
                 "bd": min(args.n_bd_slow, args.n_bd) if tool in slow_bd else args.n_bd}
            print(f"\n== {tool} ({n}) ==", flush=True)
            results[tool] = run_tool(tool, sets, n, tmp, args)
    load1 = os.getloadavg()
    total = time.perf_counter() - t_all
    if args.raw:
        with open(args.raw, "wb") as f:
            pickle.dump(dict(args=args, sets=sets, results=results, found=found, slow=slow, cmdline=cmdline,
                             load0=load0, load1=load1, total=total), f)
    report = make_report(args, sets, results, found, slow, cmdline, load0, load1, total)
    print("\n" + report)
    with open(args.results, "w") as f:
        f.write(report)
    print(f"written {args.results}")
    return 0


def environment():
    import jax
    import numpy

    lines = [f"python {platform.python_version()}, numpy {numpy.__version__}, jax {jax.__version__}, "
             f"{platform.platform()}, {os.cpu_count()} CPU cores"]
    try:
        import torch

        lines.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return cpu, mem, "; ".join(lines)


def make_report(args, sets, results, found, slow, cmdline, load0, load1, total):
    cpu, mem, env = environment()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "galmoss_jax"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    L = ["# galmoss_jax against other fitters", "",
         f"Command: `{cmdline}` (total {total / 60:.1f} min).", "",
         f"Machine: {cpu}, {mem}; {env}. Load average (1, 5, 15 min) at start "
         f"{', '.join(f'{x:.1f}' for x in load0)}, at end {', '.join(f'{x:.1f}' for x in load1)} "
         "(the machine is shared: timings are noisy; all tools ran in this one run, one after another).", "",
         *[f"{t} ran in a separate run at the same time (`{results[t]['separate_run']}`)." for t in found
           if "separate_run" in results[t]], "",
         "Versions: " + ", ".join(f"{t} {results[t].get('version', '?')}" for t in found if "version" in results[t])
         + f"; galmoss_jax from the working tree, commit {commit}{' + local changes' if dirty else ''}.", "",
         "Definitions: *gal/s* steady-state galaxies per second; *start-up* import + one-off cost of the first "
         "fit (JAX compilation; for serial tools the first galaxy's excess over the median); *wall* = start-up "
         "+ the set's steady time (a cold run on that set). Accuracy: |fit − truth|, median / 90th percentile, "
         "over fits with finite values; r_e relative; pa only for galaxies with true q < 0.8. "
         "*Catastrophic*: non-finite result, |Δmag| > 0.5, |Δr_e|/r_e > 0.5 or |Δn|/n > 0.5 (bulge + disk: "
         "|Δ total mag| > 0.5, |Δr_s|/r_s > 0.5 or |ΔB/T| > 0.3). *1σ cover*: fraction of (galaxy, parameter) "
         "pairs with |fit − truth| ≤ the tool's reported 1σ error, over x0, y0, r_e, n, q, pa (ideal 0.683); "
         "*cover mag* the same for mag where the tool reports a magnitude error. "
         "Start sets: *perturbed* = truth perturbed (sizes and n ±10–20 %, ±0.3 mag, ≤ 1 px, q ±5–15 %, "
         "±10°); *poor* = n 1, r_e 5 px, q 0.95, pa 0, stamp centre, mag from the stamp flux (q 0.95 "
         "rather than 1 so that no tool starts on its q bound or with an undefined pa).", ""]
    # single Sérsic table
    for kind, title in (("sersic", "Single Sérsic"), ("bd", "Bulge + disk")):
        if kind not in sets:
            continue
        truth = sets[kind]["truth"]
        rates = {}
        nslow = args.n_slow if kind == "sersic" else getattr(args, "n_bd_slow", args.n_slow)
        L += [f"## {title} ({len(sets[kind]['data'])} GalSim galaxies; slow tools: the first {nslow})", ""]
        if kind == "sersic":
            L += ["| tool | start | N | gal/s | start-up (s) | wall (s) | Δmag | Δr_e/r_e | Δn | Δq | Δpa (°) | "
                  "catastrophic | 1σ cover | cover mag | LM/steps med / max |",
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        else:
            L += ["| tool | start | N | gal/s | start-up (s) | wall (s) | Δ total mag | ΔB/T | Δr_e,b/r_e,b | Δr_s/r_s | "
                  "Δn_b | catastrophic | 1σ cover | iter med / max |",
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for tool in found:
            res = results[tool]
            if "error" in res or kind not in res or "error" in res[kind]:
                msg = res.get("error") or res.get(kind, {}).get("error", "not run")
                L.append(f"| {tool} | – | – | failed: {msg} |" + " |" * (10 if kind == "sersic" else 9))
                continue
            for sname in res[kind]["out"]:
                out = res[kind]["out"][sname]
                n = len(out["chi2_nu"])
                su, rate, wall = timings(tool, res, sname, kind, "sersic")
                if kind == "sersic":
                    m = sersic_metrics(truth, out, n)
                    L.append(f"| {tool} | {sname} | {n} | {rate:.3g} | {su:.1f} | {wall:.0f} | {fmt(m['mag'])} | "
                             f"{fmt(m['r_e'])} | {fmt(m['n'])} | {fmt(m['q'])} | {fmt(m['pa'])} | {m['cat']:.2f} | "
                             f"{fmt(m['cover'], 2)} | {fmt(m['cover_mag'], 2)} | {fmt(m['n_iter'])} |")
                else:
                    m = bd_metrics(truth, out, n)
                    L.append(f"| {tool} | {sname} | {n} | {rate:.3g} | {su:.1f} | {wall:.0f} | {fmt(m['tot'])} | "
                             f"{fmt(m['bt'])} | {fmt(m['b_r_e'])} | {fmt(m['d_r_s'])} | {fmt(m['b_n'])} | "
                             f"{m['cat']:.2f} | {fmt(m['cover'], 2)} | {fmt(m['n_iter'])} |")
                rates.setdefault(sname, {})[tool] = rate
        for sname, r in rates.items():
            peers = {t: v for t, v in r.items() if not t.startswith("galmoss_jax")}
            if not peers:
                continue
            best = max(peers, key=peers.get)
            for ours in (t for t in r if t.startswith("galmoss_jax")):
                label = "galmoss_jax (defaults)" if ours == "galmoss_jax" else "galmoss_jax (starts=1)"
                L.append(f"\n{sname} start: {label} {r[ours]:.3g} gal/s = "
                         f"{r[ours] / peers[best]:.2g}× the fastest peer ({best}, {peers[best]:.3g} gal/s).")
        L.append("")
    # SDSS
    if "sdss" in sets:
        job = sets["sdss"]
        L += ["## The three bundled SDSS galaxies (single Sérsic, zp 22.5, from one moment-based start)", "",
              "No truth: agreement between tools, each tool's own reduced χ² and the reduced χ² of its best-fit "
              "parameters rendered by one common model (galmoss_jax's: exact pixel integration, PSF on the "
              "padded stamp), on the same pixels and σ.", "",
              "| galaxy | tool | mag | r_e (px) | n | q | pa (°) | χ²_ν own | χ²_ν common | s |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
        rows = {}
        for tool in found:
            res = results[tool]
            if "error" in res or "sdss" not in res or "error" in res["sdss"]:
                continue
            out = res["sdss"]["out"]["moments"]
            cc = common_chi2(job, out["values"])
            secs = res["sdss"]["timing"].get("moments_call0", res["sdss"].get("wall"))
            rows[tool] = (out, cc, secs)
        for g, name in enumerate(SDSS_NAMES):
            for tool, (out, cc, secs) in rows.items():
                v = out["values"]
                L.append(f"| {name} | {tool} | {v['mag'][g]:.3f} | {v['r_e'][g]:.2f} | {v['n'][g]:.2f} | {v['q'][g]:.3f} | "
                         f"{v['pa'][g]:.1f} | {out['chi2_nu'][g]:.4f} | {cc[g]:.4f} | "
                         f"{'' if g else fmt(float(secs) if secs is not None else None)} |")
        if rows:
            L += ["", "Spread between tools (max − min over tools): " + "; ".join(
                f"{name}: mag {np.ptp([o['values']['mag'][g] for o, _, _ in rows.values()]):.3f}, "
                f"r_e {np.ptp([o['values']['r_e'][g] for o, _, _ in rows.values()]):.2f} px, "
                f"n {np.ptp([o['values']['n'][g] for o, _, _ in rows.values()]):.2f}"
                for g, name in enumerate(SDSS_NAMES)) + ". *s* = the tool's time for the three fits."]
        L.append("")
    # galmoss_jax profile
    for tool in ("galmoss_jax", "galmoss_jax_1"):
        if tool not in results or "sersic" not in results[tool] or "error" in results[tool]["sersic"]:
            continue
        r = results[tool]
        L += [f"## Where galmoss_jax's time goes ({'defaults' if tool == 'galmoss_jax' else 'starts=1'})", ""]
        for kind in ("sersic", "bd"):
            if kind not in r or "error" in r[kind]:
                continue
            tim = r[kind]["timing"]
            first = list(r[kind]["out"])[0]
            for sname, out in r[kind]["out"].items():
                G = len(out["chi2_nu"])
                steady = tim[f"{sname}_call1"] if sname == first else tim[f"{sname}_call0"]
                it = np.asarray(out["n_iter"], float)
                L.append(f"* {kind}, {sname}: G = {G}; first call {tim[f'{first}_call0']:.1f} s "
                         f"(compile ≈ {tim[f'{first}_call0'] - tim[f'{first}_call1']:.1f} s), steady {steady:.1f} s = "
                         f"{1e3 * steady / G:.0f} ms/galaxy; LM iterations median {np.median(it):.0f}, "
                         f"mean {np.mean(it):.1f}, max {np.max(it):.0f} (of the run kept); status counts "
                         f"{dict(zip(*[a.tolist() for a in np.unique(out['status'], return_counts=True)]))}.")
        L += [f"* import of galmoss_jax + JAX: {r['t_import']:.1f} s.", ""]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
