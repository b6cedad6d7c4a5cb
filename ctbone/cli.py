"""The `ctbone` command line: a thin shell over the library.

Parses arguments, configures logging, calls the library, and maps errors to
exit codes: 0 success, 1 a scan (or some scans) failed, 2 unusable arguments.
Errors are printed as one line; tracebacks only with --debug. Heavy imports
happen inside the commands so that `ctbone --help` is instant.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from .errors import CtboneError, ManifestError, OutputError

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


def _parse_pair(text: str, name: str, sep: str) -> tuple[float, float]:
    parts = text.split(sep)
    try:
        a, b = (float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(f"expected two numbers as A{sep}B, got {text!r}", param_hint=name) from None
    return a, b


def _parse_threshold(text: str | None):
    if text is None or text == "auto":
        return "auto" if text else None
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a number in the image unit, got {text!r}", param_hint="--threshold") from None


def _parse_spacing(text: str | None):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter(f"expected SPACING_MM or Z,Y,X in mm, got {text!r}", param_hint="--spacing") from None
    if len(values) not in (1, 3) or any(v <= 0 for v in values):
        raise click.BadParameter(f"expected one or three positive mm values, got {text!r}", param_hint="--spacing")
    return values[0] if len(values) == 1 else tuple(values)


def _analysis_overrides(threshold, calibration, roi_mm, max_defect_diameter_mm, min_defect_area_mm2, min_lesion_mm3,
                        sigma_vox, mirror_reference, no_render) -> dict:
    overrides = {
        "threshold": _parse_threshold(threshold),
        "calibration": _parse_pair(calibration, "--calibration", ",") if calibration else None,
        "roi_mm": _parse_pair(roi_mm, "--roi-mm", ":") if roi_mm else None,
        "max_defect_diameter_mm": max_defect_diameter_mm,
        "min_defect_area_mm2": min_defect_area_mm2,
        "min_lesion_mm3": min_lesion_mm3,
        "sigma_vox": sigma_vox,
        "mirror_reference": True if mirror_reference else None,
        "render": False if no_render else None,
    }
    return {k: v for k, v in overrides.items() if v is not None}


def analysis_options(func):
    """The options shared by `analyze` and `batch` (SPEC.md)."""
    decorators = [
        click.option("--threshold", metavar="auto|VALUE", default=None,
                     help="Bone threshold in the image unit (HU, mg HA/cm3 with --calibration, or raw gray), or 'auto' "
                          "(default): a histogram method that separates bone from soft tissue and marrow."),
        click.option("--calibration", metavar="SLOPE,INTERCEPT", default=None,
                     help="Map HU to mg HA/cm3 as HU*SLOPE+INTERCEPT before segmenting; thresholds are then in mg HA/cm3."),
        click.option("--roi-mm", metavar="START:END", default=None,
                     help="Analyse only this range along z, in mm from the first slice (default: the whole bone)."),
        click.option("--reference", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Contralateral or baseline scan of the same animal: adds bone_lost/gained_mm3 and _pct."),
        click.option("--mirror-reference", is_flag=True, help="The reference is the other limb: mirror it before registering."),
        click.option("--max-defect-diameter-mm", type=float, default=None,
                     help="Widest cortical opening the periosteal envelope bridges (default 0.6)."),
        click.option("--min-defect-area-mm2", type=float, default=None,
                     help="Smallest opening counted as a cortical defect, on the periosteal surface (default 0.005)."),
        click.option("--min-lesion-mm3", type=float, default=None, help="Smallest lesion volume kept (default 0.001)."),
        click.option("--sigma-vox", type=float, default=None, help="Gaussian smoothing sigma in voxels (default 0.8)."),
        click.option("--no-render", is_flag=True, help="Do not write 3D snapshots."),
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
      ctbone analyze SCAN_DIR -o out/          one scan -> metrics.csv, masks, snapshot.png
      ctbone batch manifest.csv -o study_out/  a whole study -> per_animal.csv, stats, report.html
      ctbone demo -o demo_out/                 synthetic demo study, end to end
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--series", default=None, help="Series to describe as chosen (UID or SeriesNumber).")
@click.option("--spacing", default=None, help="Voxel size in mm for TIFF stacks (one value or Z,Y,X).")
@click.option("-v", "--verbose", is_flag=True, help="Also list skipped files and why.")
def info(path, as_json, series, spacing, verbose):
    """Describe the scan(s) at PATH: series found, the chosen one, geometry, rescale, units, vendor."""
    import json

    from .io import format_scan_info, scan_info

    _configure_logging(verbose, False)
    description = scan_info(path, series=series, spacing=_parse_spacing(spacing))
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


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--series", default=None, help="Series to analyse (UID or SeriesNumber) when PATH holds several.")
@click.option("--spacing", default=None, help="Voxel size in mm for TIFF stacks (one value or Z,Y,X).")
@analysis_options
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log each stage and skipped files.")
def analyze(path, outdir, series, spacing, threshold, calibration, roi_mm, reference, mirror_reference,
            max_defect_diameter_mm, min_defect_area_mm2, min_lesion_mm3, sigma_vox, no_render, quiet, verbose):
    """Analyse one scan at PATH and write metrics.csv, metrics.json, lesions.csv, masks/ and snapshot.png to OUTDIR."""
    _configure_logging(verbose, quiet)
    overrides = _analysis_overrides(threshold, calibration, roi_mm, max_defect_diameter_mm, min_defect_area_mm2,
                                    min_lesion_mm3, sigma_vox, mirror_reference, no_render)
    spacing_mm = _parse_spacing(spacing)
    _refuse_output_inside_input(outdir, path, reference)
    from . import analyze as run_analysis, read_scan
    from .report.scan_outputs import write_scan_outputs

    volume = read_scan(path, series=series, spacing=spacing_mm)
    log.info("read %s: %s", path, volume)
    result = run_analysis(volume, reference=reference, **overrides)
    written = write_scan_outputs(result, outdir, render=result.options.render,
                                 inputs=[p for p in (path, reference) if p is not None])
    if not quiet:
        m = result.metrics
        click.echo(f"{path}: BV {m.get('bv_mm3', float('nan')):.4g} mm3, "
                   f"{m.get('cortical_defect_count', 0)} cortical defect(s), "
                   f"lytic {m.get('lytic_volume_mm3', float('nan')):.4g} mm3, "
                   f"blastic {m.get('blastic_volume_mm3', float('nan')):.4g} mm3 -> {outdir}")
    return written


@cli.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@analysis_options
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Scans analysed in parallel (local processes).")
@click.option("--scheduler", metavar="ADDRESS", default=None, help="Run on a dask.distributed cluster (e.g. tcp://host:8786).")
@click.option("--control", default=None, help="Control group for statistics (default: the first group in the manifest).")
@click.option("--force", is_flag=True, help="Recompute every scan, even those whose outputs are complete and unchanged.")
@click.option("--validate", "validate_only", is_flag=True, help="Only check the manifest (dry run) and exit.")
@click.option("--allow-absolute-paths", is_flag=True, help="Allow manifest paths outside the manifest's folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; only errors.")
@click.option("-v", "--verbose", is_flag=True, help="Show stages within each scan.")
def batch(manifest, outdir, threshold, calibration, roi_mm, reference, mirror_reference, max_defect_diameter_mm,
          min_defect_area_mm2, min_lesion_mm3, sigma_vox, no_render, workers, scheduler, control, force,
          validate_only, allow_absolute_paths, quiet, verbose):
    """Analyse every scan of a study MANIFEST (CSV: animal_id, group, scan[, limb, timepoint, reference, ...]).

    Writes per_animal.csv, lesions.csv, group_summary.csv, group_stats.csv, study.pzfx, plots/, snapshots/,
    report.html and run.json to OUTDIR. Re-running skips scans already done (use --force to recompute).
    """
    from .pipeline import make_options
    from .study import run_batch

    _configure_logging(verbose, quiet)
    overrides = _analysis_overrides(threshold, calibration, roi_mm, max_defect_diameter_mm, min_defect_area_mm2,
                                    min_lesion_mm3, sigma_vox, mirror_reference, no_render)
    if reference is not None:
        raise click.BadParameter("give references per animal in the manifest's 'reference' column", param_hint="--reference")
    options = make_options(**overrides)
    return run_batch(manifest, outdir, options=options, workers=workers, scheduler=scheduler, force=force, quiet=quiet,
                     verbose=verbose, control=control, validate_only=validate_only,
                     allow_absolute_paths=allow_absolute_paths)


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", "out_png", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@click.option("--view", type=click.Choice(["oblique", "anterior", "posterior", "medial", "lateral", "panel"]),
              default="oblique", show_default=True, help="Camera view, or a 2x2 panel of four views.")
@click.option("--size", default="1600x1200", show_default=True, help="Image size WIDTHxHEIGHT in pixels.")
@click.option("--label", default=None, help="Text written on the picture (e.g. animal and group).")
@click.option("--series", default=None, help="Series to render (UID or SeriesNumber).")
@click.option("--spacing", default=None, help="Voxel size in mm for TIFF stacks.")
@click.option("--threshold", metavar="auto|VALUE", default=None, help="Bone threshold (default auto).")
def render(path, out_png, view, size, label, series, spacing, threshold):
    """Render a 3D snapshot of the bone at PATH with lesions coloured."""
    from .render import render_scan

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {size!r}", param_hint="--size") from None
    _configure_logging(False, False)
    _refuse_output_inside_input(out_png.parent, path)
    options = {"threshold": _parse_threshold(threshold)} if threshold else {}
    render_scan(path, out_png, view=view, size=(width, height), label=label, series=series,
                spacing=_parse_spacing(spacing), **options)
    click.echo(f"wrote {out_png}")


@cli.command()
@click.argument("outdir", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed (same seed, same phantom).")
@click.option("--study", is_flag=True, help="Write the whole demo study (several animals, both limbs) with a manifest.")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON phantom definition (default: a tibia with a perforation, a lytic cavity and a blastic outgrowth).")
def phantom(outdir, seed, study, spec):
    """Write synthetic mouse-bone scans with exact ground truth (DICOM series + truth.json)."""
    from . import phantoms

    if study:
        manifest = phantoms.write_study(outdir, seed=seed)
        click.echo(f"wrote demo study; manifest: {manifest}")
        return
    phantom_spec = phantoms.PhantomSpec.from_json(spec.read_text()) if spec else phantoms.default_spec()
    folder = phantoms.write_phantom(phantom_spec, outdir, seed=seed)
    click.echo(f"wrote phantom to {folder} (DICOM in dicom/, ground truth in truth.json)")


@cli.command()
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Scans analysed in parallel.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def demo(outdir, workers, quiet):
    """Generate the demo study from phantoms/ (control vs treated, both limbs) and run batch on it."""
    from .study.demo import run_demo

    _configure_logging(False, quiet)
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
