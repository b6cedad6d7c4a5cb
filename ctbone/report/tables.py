"""Study tables from the per-animal rows: group summary, group statistics, change from baseline.

Rows are plain dicts (one per manifest row, ``status`` "ok" or "error"); only
``ok`` rows with a finite value enter a statistic. Groups keep manifest order.
"""

from __future__ import annotations

import math

from .stats import (describe, hedges_g, holm, kruskal, mann_whitney, paired_effect, paired_t, welch_anova, welch_t,
                    wilcoxon_signed_rank)

SUMMARY_STATS = ("n", "mean", "sd", "sem", "median", "q1", "q3", "min", "max")
STATS_COLUMNS = ("metric", "timepoint", "comparison", "group_a", "group_b", "n_a", "n_b", "test", "statistic", "df",
                 "p", "p_adj", "hedges_g", "ci_low", "ci_high")
CHANGE_SUFFIX = "_change_pct"
LIMB_DIFF_SUFFIX = "_limb_diff_pct"


def _value(row: dict, metric: str) -> float:
    try:
        v = float(row.get(metric))
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def ok_rows(rows):
    """The rows whose scan was analysed."""
    return [r for r in rows if r.get("status") == "ok"]


def group_order(rows) -> list[str]:
    """Groups in order of first appearance in the manifest."""
    return list(dict.fromkeys(str(r["group"]) for r in rows))


def timepoint_order(rows) -> list[str]:
    """Distinct timepoints ('' when none), numeric ones sorted numerically, else in manifest order."""
    values = list(dict.fromkeys(str(r.get("timepoint") or "") for r in rows))
    try:
        return sorted(values, key=float)
    except ValueError:
        return values


def has_timepoints(rows) -> bool:
    """True when the rows hold more than one distinct timepoint."""
    return len(timepoint_order(rows)) > 1


def limb_strata(rows) -> list:
    """The limbs the statistics are split by, in manifest order, when an animal has several ok rows in one group
    and timepoint (both limbs as rows: counted together, an animal would count twice and an injected limb would
    be pooled with its contralateral); ``[None]`` (no split) otherwise."""
    seen: dict[tuple, int] = {}
    for r in ok_rows(rows):
        key = (str(r["group"]), str(r["animal_id"]), str(r.get("timepoint") or ""))
        seen[key] = seen.get(key, 0) + 1
    if not any(n > 1 for n in seen.values()):
        return [None]
    return list(dict.fromkeys(str(r.get("limb") or "") for r in ok_rows(rows)))


def in_stratum(row, timepoint=None, limb=None) -> bool:
    """Whether ``row`` belongs to a (timepoint, limb) stratum (None: any)."""
    return ((timepoint is None or str(row.get("timepoint") or "") == timepoint)
            and (limb is None or str(row.get("limb") or "") == limb))


def numeric_metrics(rows, metrics) -> list[str]:
    """``metrics`` that have at least one finite value in an ok row."""
    ok = ok_rows(rows)
    return [m for m in metrics if any(math.isfinite(_value(r, m)) for r in ok)]


def group_samples(rows, metric, group, timepoint=None, limb=None) -> list[float]:
    """The finite values of ``metric`` in the ok rows of ``group`` (and of a timepoint, a limb: None for any)."""
    return [v for r in ok_rows(rows) if str(r["group"]) == group and in_stratum(r, timepoint, limb)
            for v in [_value(r, metric)] if math.isfinite(v)]


def group_summary(rows, metrics, *, limbs=None) -> list[dict]:
    """One tidy row per (group, metric[, limb][, timepoint]) with n, mean, sd, sem, median, q1, q3, min, max.

    ``limbs``: the limb strata (default `limb_strata` of ``rows``)."""
    groups = group_order(rows)
    timepoints = timepoint_order(rows) if has_timepoints(rows) else [None]
    limbs = limb_strata(rows) if limbs is None else limbs
    out = []
    for metric in numeric_metrics(rows, metrics):
        for group in groups:
            for limb in limbs:
                for tp in timepoints:
                    row = {"group": group, "metric": metric}
                    if limb is not None:
                        row["limb"] = limb
                    if tp is not None:
                        row["timepoint"] = tp
                    row.update(describe(group_samples(rows, metric, group, tp, limb)))
                    out.append(row)
    return out


def summary_columns(rows) -> list[str]:
    """group_summary.csv columns (``limb`` when split by limb, ``timepoint`` only for longitudinal studies)."""
    return (["group", "metric"] + (["limb"] if limb_strata(rows) != [None] else [])
            + (["timepoint"] if has_timepoints(rows) else []) + list(SUMMARY_STATS))


def stats_columns(rows) -> list[str]:
    """group_stats.csv columns: `STATS_COLUMNS`, with ``limb`` after ``timepoint`` when split by limb."""
    columns = list(STATS_COLUMNS)
    if limb_strata(rows) != [None]:
        columns.insert(columns.index("timepoint") + 1, "limb")
    return columns


def _test_row(metric, tp, comparison, a_name, b_name, a, b, result, effect=None) -> dict:
    return {"metric": metric, "timepoint": tp or "", "comparison": comparison, "group_a": a_name, "group_b": b_name,
            "n_a": len(a) if a is not None else "", "n_b": len(b) if b is not None else "", "test": result.test,
            "statistic": result.statistic, "df": result.df, "p": result.p,
            "hedges_g": effect.g if effect else math.nan, "ci_low": effect.ci_low if effect else math.nan,
            "ci_high": effect.ci_high if effect else math.nan}


def group_stats(rows, metrics, *, control: str | None = None) -> list[dict]:
    """Per metric (and timepoint, and limb when an animal has several limbs as rows: `limb_strata`): omnibus tests
    for 3+ groups, then each group vs control; with two limbs, also each group's limbs against each other over
    its animals with both (paired t and Wilcoxon signed-rank; comparison "L vs R (paired)", group_a = group_b;
    their ``hedges_g`` is g_z, the standardized mean of the differences).

    Two groups: Welch t and Mann-Whitney U. Three or more: Welch ANOVA and Kruskal-Wallis omnibus rows, then
    Welch t and Mann-Whitney U of every group against ``control`` (default: the first group of the manifest).
    ``p_adj`` is Holm over the pairwise comparisons of one metric, test, timepoint and limb (omnibus rows: p).
    Pairwise rows have group_a = the group, group_b = control; t, U and Hedges' g refer to the group, so
    t > 0 and g > 0 mean the group's mean exceeds control's.
    """
    groups = group_order(rows)
    if control is None or control not in groups:
        control = groups[0] if groups else None
    others = [g for g in groups if g != control]
    timepoints = timepoint_order(rows) if has_timepoints(rows) else [None]
    limbs = limb_strata(rows)
    out = []
    for metric in numeric_metrics(rows, metrics):
        for limb in limbs:
            for tp in timepoints:
                stratum = []
                samples = {g: group_samples(rows, metric, g, tp, limb) for g in groups}
                if len(groups) >= 3:
                    for fn in (welch_anova, kruskal):
                        res = fn([samples[g] for g in groups])
                        row = _test_row(metric, tp, "omnibus", "all", "all", None, None, res)
                        row["p_adj"] = res.p
                        stratum.append(row)
                for fn in (welch_t, mann_whitney):
                    family = []
                    for g in others:
                        # group first, so t > 0 and g > 0 both mean "the group exceeds control"
                        a, b = samples[g], samples[control]
                        family.append(_test_row(metric, tp, f"{g} vs {control}", g, control, a, b, fn(a, b),
                                                hedges_g(b, a)))
                    for row, p_adj in zip(family, holm([r["p"] for r in family])):
                        row["p_adj"] = p_adj
                    stratum.extend(family)
                if limb is not None:
                    for row in stratum:
                        row["limb"] = limb
                out.extend(stratum)
        if len(limbs) == 2:
            out.extend(_limb_pairs(rows, metric, groups, timepoints, *limbs))
    return out


def _limb_pairs(rows, metric, groups, timepoints, limb_a, limb_b) -> list[dict]:
    """Within each group (and timepoint): limb_a vs limb_b over the animals with both (tumour vs contralateral),
    paired t and Wilcoxon signed-rank; Holm over the groups of one test and timepoint. t > 0: limb_a higher. The
    effect size (``hedges_g`` and its CI) is then Hedges' g_z of the differences (`stats.paired_effect`)."""
    out = []
    limbs_of = _limbs_by_animal(rows)
    for tp in timepoints:
        for fn in (paired_t, wilcoxon_signed_rank):
            family = []
            for g in groups:
                pairs = [(_value(v[limb_a], metric), _value(v[limb_b], metric)) for (_, group, t), v in limbs_of.items()
                         if group == g and (tp is None or t == tp) and limb_a in v and limb_b in v]
                pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
                a, b = [p[0] for p in pairs], [p[1] for p in pairs]
                row = _test_row(metric, tp, f"{limb_a} vs {limb_b} (paired)", g, g, a, b, fn(a, b),
                                paired_effect(a, b))
                row["limb"] = f"{limb_a} vs {limb_b}"
                family.append(row)
            for row, p_adj in zip(family, holm([r["p"] for r in family])):
                row["p_adj"] = p_adj
            out.extend(family)
    return out


def _limbs_by_animal(rows) -> dict[tuple, dict]:
    """(animal_id, group, timepoint) -> {limb: its ok row}, in the order the animals first appear."""
    by_animal: dict[tuple, dict] = {}
    for r in ok_rows(rows):
        key = (str(r["animal_id"]), str(r["group"]), str(r.get("timepoint") or ""))
        by_animal.setdefault(key, {})[str(r.get("limb") or "")] = r
    return by_animal


def _pct_of(x: float, reference: float) -> float:
    """(x − reference) / reference × 100; NaN when the reference is missing or zero."""
    return (x - reference) / reference * 100 if math.isfinite(reference) and reference != 0 else math.nan


def limb_difference(rows, metrics, limb_a: str, limb_b: str) -> list[dict]:
    """Per animal (and timepoint): % difference of each metric between its two limbs, (X_a − X_b) / X_b × 100
    (METHODS-NOTES' contralateral normalisation, with ``limb_a`` the tumour limb); NaN when a limb is missing,
    failed or zero. One row per animal with an ok limb; ``limb`` reads "A vs B"."""
    names = numeric_metrics(rows, metrics)
    out = []
    for (animal, group, tp), limbs in _limbs_by_animal(rows).items():
        a, b = limbs.get(limb_a), limbs.get(limb_b)
        diff = {"animal_id": animal, "group": group, "limb": f"{limb_a} vs {limb_b}", "timepoint": tp}
        for m in names:
            x, x0 = (_value(a, m) if a else math.nan), (_value(b, m) if b else math.nan)
            diff[m + LIMB_DIFF_SUFFIX] = _pct_of(x, x0)
        out.append(diff)
    return out


def baseline_change(rows, metrics) -> list[dict]:
    """Per animal (animal_id + limb) and timepoint: % change of each metric from the first timepoint.

    (X_t − X_0) / X_0 × 100; NaN when the baseline is missing, failed or zero.
    """
    tps = timepoint_order(rows)
    baseline_tp = tps[0]
    base = {}
    for r in ok_rows(rows):
        if str(r.get("timepoint") or "") == baseline_tp:
            base[(str(r["animal_id"]), str(r.get("limb") or ""))] = r
    out = []
    for r in ok_rows(rows):
        key = (str(r["animal_id"]), str(r.get("limb") or ""))
        b = base.get(key)
        change = {"animal_id": key[0], "group": r["group"], "limb": key[1], "timepoint": str(r.get("timepoint") or "")}
        for m in numeric_metrics(rows, metrics):
            x, x0 = _value(r, m), _value(b, m) if b else math.nan
            change[m + CHANGE_SUFFIX] = _pct_of(x, x0)
        out.append(change)
    return out
