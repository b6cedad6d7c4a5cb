"""The `ctbone` command line: a thin shell over the library.

Parses arguments, configures logging, calls the library, and maps errors to
exit codes: 0 success, 1 a scan (or some scans) failed, 2 unusable arguments.
Errors are printed as one line; tracebacks only with --debug. Heavy imports
happen inside the commands so that `ctbone --help` is instant.
"""

from __future__ import annotations

import contextlib

import logging
import sys
from pathlib import Path

import click

from .errors import CtboneError, ManifestError, OutputError
from .memory import retain_freed_memory

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("ctbone")


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else (logging.ERROR if quiet else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ctbone: %(levelname)s: %(message)s"))
    root = logging.getLogger("ctbone")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else level)
    root.propagate = False


class ArgumentError(click.ClickException):
    """An unusable argument found after parsing (e.g. a bad spec file): one line, exit 2."""

    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:
        click.echo(f"ctbone: error: {self.format_message()}", err=True)


def _parse_pair(text: str, name: str, sep: str) -> tuple[float, float]:
    import math

    parts = text.split(sep)
    try:
        a, b = (float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(f"expected two numbers as A{sep}B, got {text!r}", param_hint=name) from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise click.BadParameter(f"expected finite numbers, got {text!r}", param_hint=name)
    return a, b


def _parse_threshold(text: str | None):
    import math

    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise click.BadParameter(f"expected 'auto' or a number in the image unit, got {text!r}", param_hint="--threshold")
    return value


def _parse_roi(text: str | None):
    from .study.manifest import parse_roi_mm

    return _parsed_as_in_manifest(text, parse_roi_mm, "--roi-mm",
                                  "START:END in mm along z with 0 <= START < END, or 'metaphyseal'")


def _parsed_as_in_manifest(text: str | None, parse, param_hint: str, expected: str):
    """``parse(text)`` (a manifest column's parser: the option and the column read the same way), None for None,
    a usage error saying what was ``expected`` for a ValueError."""
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError:
        raise click.BadParameter(f"expected {expected}, got {text!r}", param_hint=param_hint) from None


def _parse_calibration(text: str | None, rod_densities: str | None, allow_nonuniform: bool = False):
    """SLOPE,INTERCEPT, or the path of a calibration-phantom scan fitted against --rod-densities."""
    if text is None:
        if rod_densities is not None:
            raise click.BadParameter("needs --calibration PHANTOM_SCAN", param_hint="--rod-densities")
        return None
    if not Path(text).exists():
        if rod_densities is not None:
            raise click.BadParameter(f"--rod-densities needs --calibration to be a phantom scan; {text!r} is not "
                                     f"a file or folder", param_hint="--rod-densities")
        slope, intercept = _parse_pair(text, "--calibration", ",")
        if slope <= 0:
            raise click.BadParameter(f"SLOPE must be positive (denser is brighter), got {text!r}",
                                     param_hint="--calibration")
        return slope, intercept
    if rod_densities is None:
        raise click.BadParameter(f"{text} is a calibration-phantom scan: give its rods' densities with "
                                 f"--rod-densities MGHA_CM3,MGHA_CM3[,...]", param_hint="--calibration")
    try:
        densities = [float(v) for v in rod_densities.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected densities in mg HA/cm3 separated by commas, got {rod_densities!r}",
                                 param_hint="--rod-densities") from None
    from .calibrate import fit_calibration_phantom
    from .errors import CalibrationError
    from .io import read_scan

    phantom = read_scan(text, allow_nonuniform=allow_nonuniform)
    try:
        slope, intercept = fit_calibration_phantom(phantom, densities_mgha_cm3=densities)
    except CalibrationError as exc:
        raise ArgumentError(str(exc)) from exc
    log.warning("calibration from the phantom %s: mg HA/cm3 = value * %.6g + %.6g", text, slope, intercept)
    return slope, intercept


def _parse_spacing(text: str | None):
    from .study.manifest import parse_spacing_mm

    return _parsed_as_in_manifest(text, parse_spacing_mm, "--spacing", "one or three positive mm values (z,y,x)")


def _analysis_overrides(threshold, calibration, roi_mm, max_defect_diameter_mm, min_defect_area_mm2, min_lesion_mm3,
                        sigma_vox, mirror_reference, no_render, *, mode=None, allow_nonuniform=False,
                        rod_densities=None, trabecular_threshold=None, low_memory=False, bone=None,
                        reference_bone=None) -> dict:
    for name, value in (("--max-defect-diameter-mm", max_defect_diameter_mm), ("--min-defect-area-mm2", min_defect_area_mm2),
                        ("--min-lesion-mm3", min_lesion_mm3), ("--sigma-vox", sigma_vox)):
        if value is not None and not (0 <= value < float("inf")):
            raise click.BadParameter(f"must be a finite number >= 0, got {value}", param_hint=name)
    roi = _parse_roi(roi_mm)
    threshold_value = _parse_threshold(threshold)
    overrides = {
        "threshold": threshold_value,
        "trabecular_threshold": trabecular_threshold,
        "calibration": _parse_calibration(calibration, rod_densities, allow_nonuniform),
        "roi_mm": roi,
        "max_defect_diameter_mm": max_defect_diameter_mm,
        "min_defect_area_mm2": min_defect_area_mm2,
        "min_lesion_mm3": min_lesion_mm3,
        "sigma_vox": sigma_vox,
        "mirror_reference": True if mirror_reference else None,
        "render": False if no_render else None,
        "mode": mode,
        "allow_nonuniform": True if allow_nonuniform else None,
        "memory": "slabs" if low_memory else None,
        "bone": bone,
        "reference_bone": reference_bone,
    }
    return {k: v for k, v in overrides.items() if v is not None}


def _default(name: str):
    from .options import AnalysisOptions

    return getattr(AnalysisOptions(), name)


ALLOW_NONUNIFORM_HELP = ("Resample a DICOM series whose slice spacing varies onto its median spacing (mm), by linear "
                         "interpolation between slices, instead of refusing it. Missing slices are still refused.")


def allow_nonuniform_option(func):
    return click.option("--allow-nonuniform", is_flag=True, help=ALLOW_NONUNIFORM_HELP)(func)


def spacing_option(func):
    """--spacing of the one-scan commands (info, analyze, render); batch words it for a study."""
    return click.option("--spacing", metavar="MM|Z,Y,X", default=None,
                        help="Voxel size in mm for image stacks (TIFF, BMP, PNG slices), which carry none; default: "
                             "from a Bruker *_rec.log beside them. One value, or Z,Y,X in mm.")(func)


LOW_MEMORY_HELP = ("Read a DICOM series, an image stack, a MetaImage (.mhd) or a Scanco ISQ / AIM slab by slab and "
                   "hold only the bone's rows and columns in memory, for scans larger than memory (a 2000^3 scan in a "
                   "few GB). Same results, slower. Default: only when the scan would not fit in the memory available.")


def analysis_options(func):
    """The options shared by `analyze` and `batch` (SPEC.md)."""
    decorators = [
        click.option("--threshold", metavar="auto|VALUE", default=None,
                     help="Bone threshold: 'auto' (default; half-way between the bone and soft-tissue peaks of the "
                          "histogram) or a VALUE in the image unit: HU; mg HA/cm3 when --calibration is given or the "
                          "scan carries a vendor density calibration (Scanco); raw gray value otherwise."),
        click.option("--trabecular-threshold", type=click.Choice(["local", "global"]), default=None,
                     help="Trabeculae in the marrow: 'local' (default; each is cut at half its own peak, never "
                          "above --threshold, so thin blurred trabeculae are not lost; Waarsing et al. 2004) or "
                          "'global' (the bone threshold, as a single-threshold vendor analysis)."),
        click.option("--calibration", metavar="SLOPE,INTERCEPT|PHANTOM_SCAN", default=None,
                     help="Density calibration applied before segmenting: mg HA/cm3 = value * SLOPE + INTERCEPT "
                          "(SLOPE in mg HA/cm3 per HU, or per gray value for raw images; INTERCEPT in mg HA/cm3). "
                          "Replaces a vendor calibration; --threshold is then in mg HA/cm3. Or the path of a "
                          "calibration-phantom scan: its rods are fitted against --rod-densities."),
        click.option("--rod-densities", metavar="MGHA_CM3,...", default=None,
                     help="Densities of the calibration phantom's rods in mg HA/cm3 (e.g. 250,750), with "
                          "--calibration PHANTOM_SCAN."),
        click.option("--roi-mm", metavar="START:END|metaphyseal", default=None,
                     help="Region analysed along z (the slice axis). START:END: in mm from the centre of the first "
                          "slice, 0 <= START < END. 'metaphyseal': the standard metaphyseal ROI found automatically, "
                          "starting 0.1 mm below the growth plate and 1.0 mm long towards the shaft (fails when no "
                          "growth plate is found). Default: the whole bone."),
        click.option("--mode", type=click.Choice(["long-bone", "trabecular-cube"]), default=None,
                     help="long-bone (default): a bone or part of one, split into periosteal envelope, cortex and "
                          "marrow. trabecular-cube: the scan is a VOI cut from trabecular bone; the whole volume is "
                          "the trabecular region (no envelope crop, no cortex)."),
        click.option("--reference", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Contralateral or baseline scan of the same animal: adds bone_lost/gained_mm3 and _pct."),
        click.option("--mirror-reference", is_flag=True, help="The reference is the other limb: mirror it before registering."),
        click.option("--bone", type=click.IntRange(min=1), default=None,
                     help="Which bone of a scan holding several (both limbs of an in vivo scan): the N-th bone-sized "
                          "particle along x, 1 = nearest the first column (the left of a slice as displayed). "
                          "Default: the largest. Check the snapshot."),
        click.option("--reference-bone", type=click.IntRange(min=1), default=None,
                     help="Which bone of the reference scan, counted as --bone (the other limb when the reference is "
                          "the same scan: --reference SCAN --reference-bone 2 --mirror-reference). Default: the largest."),
        allow_nonuniform_option,
        click.option("--low-memory", is_flag=True, help=LOW_MEMORY_HELP),
        click.option("--max-defect-diameter-mm", type=float, default=None,
                     help=f"Widest cortical opening the periosteal envelope bridges, in mm "
                          f"(default {_default('max_defect_diameter_mm')} mm)."),
        click.option("--min-defect-area-mm2", type=float, default=None,
                     help=f"Smallest opening counted as a cortical defect, in mm2 on the periosteal surface "
                          f"(default {_default('min_defect_area_mm2')} mm2)."),
        click.option("--min-lesion-mm3", type=float, default=None,
                     help=f"Smallest lesion volume kept, in mm3 (default {_default('min_lesion_mm3')} mm3)."),
        click.option("--sigma-vox", type=float, default=None,
                     help=f"Gaussian smoothing sigma in voxels (default {_default('sigma_vox')} voxels)."),
        click.option("--no-render", is_flag=True, help="Do not write the pictures: 3D snapshots and QC slices."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ctbone", prog_name="ctbone")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """ctbone: bone-destruction (osteolysis) metrics from micro-CT scans of mouse bones.

    \b
    Typical use:
      ctbone info SCAN_DIR                     what series a folder holds
      ctbone analyze SCAN_DIR -o out/          one scan -> metrics.csv, masks, snapshot.png, qc_slices.png
      ctbone batch manifest.csv -o study_out/  a whole study -> per_animal.csv, stats, report.html
      ctbone demo -o demo_out/                 synthetic demo study, end to end
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--series", default=None, help="Series to describe as chosen (UID or SeriesNumber).")
@spacing_option
@allow_nonuniform_option
@click.option("-v", "--verbose", is_flag=True, help="Also list skipped files and why.")
def info(path, as_json, series, spacing, allow_nonuniform, verbose):
    """Describe the scan(s) at PATH: series found, the chosen one, geometry, rescale, units, vendor."""
    import json

    from .io import format_scan_info, scan_info

    _configure_logging(verbose, False)
    description = scan_info(path, series=series, spacing=_parse_spacing(spacing), allow_nonuniform=allow_nonuniform)
    if as_json:
        click.echo(json.dumps(description, indent=2, default=str))
    else:
        click.echo(format_scan_info(description, verbose=verbose))


def _refuse_output_inside_input(outdir: Path, *inputs: Path | None) -> None:
    out = outdir.resolve()
    for item in inputs:
        if item is None:
            continue
        folder = item.resolve() if item.is_dir() else item.resolve().parent
        if out == folder or folder in out.parents:
            raise OutputError(f"{outdir}: output folder is inside the input folder {folder}; ctbone never writes into "
                              f"an input folder. Potential fix: choose an output folder elsewhere.")


def _set_kernel_threads(workers: int | None) -> None:
    """Threads of the compiled kernels and distance transforms of this process (analyze --workers)."""
    if workers is None:
        return
    from .study.backends import set_kernel_threads

    set_kernel_threads(workers)


ANALYZE_HELP = """Analyse one scan at PATH and write metrics.csv, metrics.json, lesions.csv, masks/, snapshot.png
    and qc_slices.png (slices of the scan with the segmentation outlined and the lesions filled: check them) to
    OUTDIR.

    PATH: a folder of DICOM files, a DICOM file, a NIfTI / MetaImage / NRRD file, a Scanco ISQ or AIM file, or a
    folder of TIFF / BMP / PNG slices (docs/inputs.md).

    Units: when the scan carries a vendor density calibration (Scanco's density slope and intercept: DICOM tags, or
    an ISQ or AIM header), it is applied automatically: the image is then in mg HA/cm3, and a fixed --threshold is
    read in mg HA/cm3. Otherwise the image is in HU (DICOM rescale) or raw gray values. --calibration
    SLOPE,INTERCEPT maps the image values to mg HA/cm3 as value * SLOPE + INTERCEPT (instead of any vendor
    calibration); --threshold is then in mg HA/cm3 too. --calibration PHANTOM_SCAN --rod-densities 250,750 fits
    SLOPE and INTERCEPT from a scan of a density phantom. Metric names carry their unit (threshold_hu or
    threshold_mgha_cm3, ..._mm3, ..._pct).
    """


@cli.command(help=ANALYZE_HELP)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--series", default=None, help="Series to analyse (UID or SeriesNumber) when PATH holds several.")
@spacing_option
@analysis_options
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Threads (a count) for the compiled measurement kernels of this scan (default: all cores).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run the analysis on a dask.distributed cluster (scheduler address, e.g. tcp://host:8786); "
                   "PATH and OUTDIR must be reachable by the workers.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log each stage and skipped files.")
def analyze(path, outdir, series, spacing, threshold, trabecular_threshold, calibration, rod_densities, roi_mm, mode, reference,
            mirror_reference, bone, reference_bone, allow_nonuniform, low_memory, max_defect_diameter_mm,
            min_defect_area_mm2, min_lesion_mm3, sigma_vox, no_render, workers, scheduler, quiet, verbose):
    _configure_logging(verbose, quiet)
    spacing_mm = _parse_spacing(spacing)
    if scheduler is not None and (series is not None or spacing_mm is not None):
        raise click.BadParameter("--series and --spacing are not sent to a cluster; analyse locally",
                                 param_hint="--scheduler")
    if reference is None and (mirror_reference or reference_bone is not None):
        flag = "--mirror-reference" if mirror_reference else "--reference-bone"
        raise click.BadParameter("describes the reference scan, and none was given. Potential fix: add "
                                 "--reference PATH, or drop it", param_hint=flag)
    _refuse_output_inside_input(outdir, path, reference)
    overrides = _analysis_overrides(threshold, calibration, roi_mm, max_defect_diameter_mm, min_defect_area_mm2,
                                    min_lesion_mm3, sigma_vox, mirror_reference, no_render, mode=mode,
                                    allow_nonuniform=allow_nonuniform, rod_densities=rod_densities,
                                    trabecular_threshold=trabecular_threshold, low_memory=low_memory, bone=bone,
                                    reference_bone=reference_bone)
    from .report.safeio import make_output_dir

    make_output_dir(outdir)  # the arguments are usable: an unusable -o is said now, not after minutes of work
    if scheduler is not None:
        return _analyze_on_cluster(path, outdir, reference, overrides, scheduler, quiet)
    _say_if_first_run(quiet)
    from . import HandedOver, analyze as run_analysis, open_scan, read_scan
    from .report.scan_outputs import write_scan_outputs
    from .study.job import check_mode_applied

    _set_kernel_threads(workers)
    # a stage bar on stderr: a 512^3 scan takes a minute or more
    stages = ["read", "segment", "lesions", "morphometry"] + (["reference"] if reference is not None else []) + ["outputs"]
    with _stage_bar(stages, quiet) as step:
        step("read")
        # slab by slab when the scan would not fit in memory (or --low-memory): same results
        # handed over: the analysis drops the whole scan once it has cut out the bone
        scan = HandedOver(open_scan(path, series=series, spacing=spacing_mm, allow_nonuniform=allow_nonuniform,
                                    memory=overrides.get("memory", "auto")))
        log.info("read %s: %s", path, scan.peek())
        reference_volume = None
        if reference is not None:
            # --spacing gives an image stack's voxel size: the reference's too when it is one (DICOM carries its own)
            from .io.stacks import is_stack

            ref_spacing = spacing_mm if is_stack(reference) else None
            reference_volume = HandedOver(read_scan(reference, spacing=ref_spacing, allow_nonuniform=allow_nonuniform))
        result = run_analysis(scan, reference=reference_volume, progress=step, **overrides)
        check_mode_applied(result, result.options)
        step("outputs")
        written = write_scan_outputs(result, outdir, render=result.options.render,
                                     inputs=[p for p in (path, reference) if p is not None])
    if not quiet:
        _echo_summary(path, outdir, result.metrics)
    return written


def _say_if_first_run(quiet: bool) -> None:
    """One line on stderr when the analysis kernels are not compiled yet (`ctbone.jit_cache`)."""
    from .jit_cache import FIRST_RUN_NOTE, kernels_cached

    if not quiet and kernels_cached() is False:
        click.echo(FIRST_RUN_NOTE, err=True)


@contextlib.contextmanager
def _stage_bar(stages: list[str], quiet: bool):
    """A tqdm bar over the named stages; yields ``step(name)``, called as each stage starts.

    Only on a terminal: piped or logged stderr keeps the one-line error contract."""
    from tqdm import tqdm

    bar = tqdm(total=len(stages), file=sys.stderr, disable=quiet or not sys.stderr.isatty(), unit="stage",
               desc="ctbone analyze", leave=False, bar_format="{desc}: {n_fmt}/{total_fmt} stages {bar} {elapsed} [{postfix}]")
    seen: list[str] = []

    def step(name: str) -> None:
        if seen:
            bar.update(1)
        seen.append(name)
        bar.set_postfix_str(name)

    try:
        yield step
    finally:
        bar.close()


def _echo_summary(path, outdir, m: dict) -> None:
    def number(name):
        value = m.get(name)
        return float("nan") if value is None else value

    if m.get("cortical_defect_count") is None:  # trabecular cube: no cortex, lesions not measured
        click.echo(f"{path}: BV {number('bv_mm3'):.4g} mm3, BV/TV {number('bv_tv_pct'):.3g} %, "
                   f"Tb.Th {number('tb_th_mm'):.3g} mm -> {outdir}")
        return
    click.echo(f"{path}: BV {number('bv_mm3'):.4g} mm3, "
               f"{m['cortical_defect_count']} cortical defect(s), "
               f"lytic {number('lytic_volume_mm3'):.4g} mm3, "
               f"blastic {number('blastic_volume_mm3'):.4g} mm3 -> {outdir}")


def _analyze_on_cluster(path, outdir, reference, overrides, scheduler, quiet) -> int:
    """One scan as one job on a dask.distributed cluster (the batch machinery, a study of one)."""
    import json

    from .pipeline import make_options
    from .study.backends import run_dask
    from .study.job import Job

    options = make_options(**overrides)
    job = Job(name=Path(path).name, scan=Path(path).resolve(), reference=Path(reference).resolve() if reference else None,
              options=options, outdir=Path(outdir).resolve(), render=options.render)
    outcome = next(iter(run_dask([job], scheduler=scheduler)))
    if outcome["status"] != "ok":
        click.echo(f"ctbone: error: {outcome['error']}", err=True)
        return EXIT_FAILED
    if not quiet:
        metrics = json.loads((Path(outdir) / "metrics.json").read_text()).get("metrics", {})
        _echo_summary(path, outdir, metrics)
    return EXIT_OK


@cli.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@analysis_options
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Scans analysed in parallel (a count of local worker processes, each given cores / N kernel "
                   "threads). One large scan keeps ~1.4 cores busy: on 2 cores, 2 workers ran four 512^3 scans 1.3x "
                   "faster; a scan starts only when its estimated memory fits.")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run on a dask.distributed cluster (e.g. tcp://host:8786); scans and OUTDIR must be at the same "
                   "paths on every worker. Overrides --workers.")
@click.option("--spacing", metavar="MM|Z,Y,X", default=None,
              help="Voxel size in mm of the study's image stacks (TIFF, BMP, PNG slices), which carry none; default: "
                   "from a Bruker *_rec.log beside each. The manifest's spacing_mm column sets it per scan.")
@click.option("--control", default=None, help="Control group for statistics (default: the first group in the manifest).")
@click.option("--force", is_flag=True, help="Recompute every scan, even those whose outputs are complete and unchanged.")
@click.option("--validate", "validate_only", is_flag=True, help="Only check the manifest (dry run) and exit.")
@click.option("--allow-absolute-paths", is_flag=True, help="Allow manifest paths outside the manifest's folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; only errors.")
@click.option("-v", "--verbose", is_flag=True, help="Show stages within each scan.")
def batch(manifest, outdir, threshold, trabecular_threshold, calibration, rod_densities, roi_mm, mode, reference, mirror_reference,
          bone, reference_bone, allow_nonuniform, low_memory, max_defect_diameter_mm, min_defect_area_mm2, min_lesion_mm3,
          sigma_vox, no_render, workers, scheduler, spacing, control, force, validate_only, allow_absolute_paths, quiet,
          verbose):
    """Analyse every scan of a study MANIFEST (CSV: animal_id, group, scan[, limb, timepoint, reference, ...]).

    Writes per_animal.csv, lesions.csv, group_summary.csv, group_stats.csv, study.pzfx, plots/, snapshots/,
    report.html, qc.html (every scan's QC slices, to review the segmentations), run.json and scans/ (each scan's
    own outputs) to OUTDIR; change_from_baseline.csv with timepoints, limb_difference.csv with both limbs of
    each animal. Re-running skips scans already done with the same inputs, options and ctbone code (use --force to
    recompute).
    The manifest's roi_mm (START:END in mm, or metaphyseal), threshold, mirror_reference, bone,
    reference_bone and spacing_mm columns override the options per row.
    """
    from .pipeline import make_options
    from .study import run_batch

    _configure_logging(verbose, quiet)
    if reference is not None:
        raise click.BadParameter("give references per animal in the manifest's 'reference' column", param_hint="--reference")
    overrides = _analysis_overrides(threshold, calibration, roi_mm, max_defect_diameter_mm, min_defect_area_mm2,
                                    min_lesion_mm3, sigma_vox, mirror_reference, no_render, mode=mode,
                                    allow_nonuniform=allow_nonuniform, rod_densities=rod_densities,
                                    trabecular_threshold=trabecular_threshold, low_memory=low_memory, bone=bone,
                                    reference_bone=reference_bone)
    spacing_mm = _parse_spacing(spacing)
    if spacing_mm is not None:
        overrides["spacing_mm"] = (spacing_mm,) * 3 if isinstance(spacing_mm, float) else tuple(spacing_mm)
    options = make_options(**overrides)
    if scheduler is None and not validate_only:  # on a cluster the workers compile, each once
        _say_if_first_run(quiet)
    return run_batch(manifest, outdir, options=options, workers=workers, scheduler=scheduler, force=force, quiet=quiet,
                     verbose=verbose, control=control, validate_only=validate_only,
                     allow_absolute_paths=allow_absolute_paths)


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "out_png", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@click.option("--view", type=click.Choice(["oblique", "anterior", "posterior", "medial", "lateral", "panel"]),
              default="oblique", show_default=True, help="Camera view, or a 2x2 panel of four views.")
@click.option("--size", metavar="WIDTHxHEIGHT", default="1600x1200", show_default=True,
              help="Image size in pixels.")
@click.option("--label", default=None, help="Text written on the picture (e.g. animal and group).")
@click.option("--series", default=None, help="Series to render (UID or SeriesNumber).")
@spacing_option
@click.option("--threshold", metavar="auto|VALUE", default=None,
              help="Bone threshold: 'auto' (default) or a VALUE in the image unit (HU; mg HA/cm3 when the scan "
                   "carries a vendor density calibration; raw gray value otherwise).")
@click.option("--bone", type=click.IntRange(min=1), default=None,
              help="Which bone of a scan holding several: the N-th along x, 1 = nearest the first column "
                   "(as for analyze). Default: the largest.")
@click.option("--turntable", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a turntable animation around the bone's long axis (.gif or .mp4).")
@click.option("--meshes", "meshes_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the bone, lytic and blastic surfaces to this folder, in scanner mm (for 3D printing, "
                   "Blender, ParaView).")
@click.option("--mesh-format", type=click.Choice(["stl", "ply"]), default="stl", show_default=True,
              help="File format of --meshes.")
@allow_nonuniform_option
def render(path, out_png, view, size, label, series, spacing, threshold, bone, turntable, meshes_dir, mesh_format,
           allow_nonuniform):
    """Render a 3D snapshot of the bone at PATH with lesions coloured (red: lytic lesions and cortical
    defects; blue: blastic bone), and optionally a turntable animation and surface meshes."""
    from .io import open_scan
    from .pipeline import analyze
    from .render import export_meshes, render_snapshot, render_turntable
    from .volume import HandedOver

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {size!r}", param_hint="--size") from None
    from .render.scene import MAX_PIXELS, MAX_SIDE_PX

    if not (16 <= width <= MAX_SIDE_PX and 16 <= height <= MAX_SIDE_PX) or width * height > MAX_PIXELS:
        raise click.BadParameter(f"expected WIDTHxHEIGHT of 16 to {MAX_SIDE_PX} pixels a side and at most "
                                 f"{MAX_PIXELS // 1_000_000} million pixels, got {size!r}", param_hint="--size")
    if turntable is not None and turntable.suffix.lower() not in (".gif", ".mp4"):
        raise click.BadParameter(f"expected a .gif or .mp4 file, got {turntable.name!r}", param_hint="--turntable")
    if turntable is not None:
        from .render.snapshot import check_turntable_path

        check_turntable_path(turntable)  # before the analysis: .mp4 needs a plugin that may be missing
    if out_png.suffix.lower() != ".png":
        raise click.BadParameter(f"snapshots are PNG pictures (lossless): expected a .png file name, got "
                                 f"{out_png.name!r}", param_hint="--output")
    _configure_logging(False, False)
    destinations = [d for d in (out_png.parent, turntable.parent if turntable else None, meshes_dir) if d is not None]
    for destination in destinations:
        _refuse_output_inside_input(destination, path)
    options = {"threshold": _parse_threshold(threshold)} if threshold else {}
    from .report.safeio import make_output_dir

    for destination in destinations:
        make_output_dir(destination)  # said now, not after the analysis
    if bone is not None:
        options["bone"] = bone
    _say_if_first_run(False)
    scan = HandedOver(open_scan(path, series, spacing=_parse_spacing(spacing), allow_nonuniform=allow_nonuniform))
    result = analyze(scan, render=False, **options)
    render_snapshot(result, out_png, view=view, size=(width, height), label=label)
    click.echo(f"wrote {out_png}")
    if turntable is not None:
        render_turntable(result, turntable, label=label)
        click.echo(f"wrote {turntable}")
    if meshes_dir is not None:
        written = export_meshes(result, meshes_dir, fmt=mesh_format)
        click.echo(f"wrote {len(written)} mesh(es) to {meshes_dir}: {', '.join(sorted(written))}")


@cli.command()
@click.argument("outdir", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True,
              help="Noise seed, an integer (same seed, same phantom).")
@click.option("--study", is_flag=True, help="Write the whole demo study (several animals, both limbs) with a manifest.")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON phantom definition: PhantomSpec fields, lengths in mm and intensities in HU (default: a "
                   "tibia with perforations, a lytic cavity and a blastic outgrowth).")
def phantom(outdir, seed, study, spec):
    """Write synthetic mouse-bone scans with exact ground truth (DICOM series + truth.json)."""
    from . import phantoms
    from .report.safeio import check_dir_can_be_made

    if study:
        if spec is not None:
            raise click.BadParameter("--study writes the demo study's own phantoms; drop --spec", param_hint="--spec")
        check_dir_can_be_made(outdir)
        from .study.demo import write_phantom_study

        manifest = write_phantom_study(outdir, seed=seed, quiet=False)
        click.echo(f"wrote demo study; manifest: {manifest}")
        return
    if spec is None:
        phantom_spec = phantoms.default_spec()
    else:
        try:
            phantom_spec = phantoms.PhantomSpec.from_file(spec)
        except phantoms.PhantomSpecError as exc:
            raise ArgumentError(str(exc)) from exc
    check_dir_can_be_made(outdir)
    try:
        folder = phantoms.write_phantom(phantom_spec, outdir, seed=seed)
    except phantoms.PhantomSpecError as exc:  # found while drawing (e.g. a shape too small for the bone)
        raise ArgumentError(f"{spec}: {exc}" if spec is not None else str(exc)) from exc
    click.echo(f"wrote phantom to {folder} (DICOM in dicom/, ground truth in truth.json)")


@cli.command()
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Scans analysed in parallel (a count of local worker processes).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def demo(outdir, workers, quiet):
    """Generate the demo study from phantoms/ (control vs treated, both limbs) and run batch on it."""
    from .report.safeio import check_dir_can_be_made
    from .study.demo import run_demo

    _configure_logging(False, quiet)
    check_dir_can_be_made(outdir)
    _say_if_first_run(quiet)
    status = run_demo(outdir, workers=workers, quiet=quiet)
    if not quiet:
        click.echo(f"demo finished: open {Path(outdir) / 'report.html'}")
    return status


def main(argv=None) -> int:
    """Entry point; returns the exit status (also usable from tests)."""
    logger = logging.getLogger("ctbone")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        return _run(argv)
    finally:  # leave the library's logger as it was (main() may run in-process, e.g. in tests or notebooks)
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def _run(argv) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    retain_freed_memory()  # this process is ctbone's: working arrays reuse freed pages (ctbone.memory)
    debug = "--debug" in args
    try:
        status = cli.main(args=args, prog_name="ctbone", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ctbone: aborted", err=True)
        return EXIT_FAILED
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except (ManifestError, OutputError) as exc:  # unusable arguments, not a failed scan
        if debug:
            raise
        click.echo(f"ctbone: error: {exc}", err=True)
        return EXIT_USAGE
    except CtboneError as exc:
        if debug:
            raise
        click.echo(f"ctbone: error: {exc}", err=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        click.echo("ctbone: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            raise
        click.echo(f"ctbone: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        return EXIT_FAILED
    return status if isinstance(status, int) else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
