"""Group statistics for a study: Welch t, Mann-Whitney U, Welch ANOVA, Kruskal-Wallis, paired t and Wilcoxon
signed-rank (one animal's two limbs), Holm, Hedges' g.

Pure functions on 1D samples; NaNs are dropped first. A test that cannot be
computed (fewer than 2 animals in a group, no variance at all) returns NaN
rather than a misleading number.

References
----------
Welch BL (1951) On the comparison of several mean values: an alternative approach. Biometrika 38:330-336.
Holm S (1979) A simple sequentially rejective multiple test procedure. Scand J Stat 6:65-70.
Hedges LV, Olkin I (1985) Statistical methods for meta-analysis. Academic Press (g, its bias correction and SE).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

NAN = float("nan")
# two-sided 95 % normal quantile for the Hedges' g confidence interval
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class TestResult:
    """One hypothesis test: name, statistic, degrees of freedom (NaN when none), two-sided p."""

    test: str
    statistic: float
    p: float
    df: float = NAN


def _clean(sample) -> np.ndarray:
    a = np.asarray(sample, dtype=float).ravel()
    return a[np.isfinite(a)]


def _quiet(fn, *args, **kwargs):
    # scipy warns (precision loss, small samples) on degenerate data that we already answer with NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return fn(*args, **kwargs)
        except ValueError:
            return None


def welch_t(a, b) -> TestResult:
    """Welch's unequal-variance t-test, two-sided; t > 0 when mean(a) > mean(b) (as scipy)."""
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return TestResult("welch_t", NAN, NAN)
    res = _quiet(_st.ttest_ind, a, b, equal_var=False)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return TestResult("welch_t", float(res.statistic), float(res.pvalue), float(df))


def mann_whitney(a, b) -> TestResult:
    """Mann-Whitney U test, two-sided (U of sample ``a``; exact p for small samples without ties)."""
    a, b = _clean(a), _clean(b)
    if len(a) < 1 or len(b) < 1:
        return TestResult("mann_whitney_u", NAN, NAN)
    res = _quiet(_st.mannwhitneyu, a, b, alternative="two-sided")
    if res is None:
        return TestResult("mann_whitney_u", NAN, NAN)
    return TestResult("mann_whitney_u", float(res.statistic), float(res.pvalue))


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def paired_t(a, b) -> TestResult:
    """Paired t-test over the pairs (a[i], b[i]) (a pair with a NaN dropped), two-sided; t > 0 when a exceeds b
    on average. NaN for fewer than 2 pairs or differences that do not vary."""
    a, b = _pairs(a, b)
    if len(a) < 2 or np.ptp(a - b) == 0:
        return TestResult("paired_t", NAN, NAN)
    res = _quiet(_st.ttest_rel, a, b)
    return TestResult("paired_t", float(res.statistic), float(res.pvalue), float(len(a) - 1))


def wilcoxon_signed_rank(a, b) -> TestResult:
    """Wilcoxon signed-rank test over the pairs (a[i], b[i]), two-sided (zero differences dropped, as Wilcoxon);
    NaN when no pair differs."""
    a, b = _pairs(a, b)
    res = _quiet(_st.wilcoxon, a, b) if len(a) and np.any(a != b) else None
    if res is None:
        return TestResult("wilcoxon_signed_rank", NAN, NAN)
    return TestResult("wilcoxon_signed_rank", float(res.statistic), float(res.pvalue))


def kruskal(samples) -> TestResult:
    """Kruskal-Wallis H test over two or more samples (NaN when every value is identical)."""
    samples = [_clean(s) for s in samples]
    samples = [s for s in samples if len(s)]
    if len(samples) < 2:
        return TestResult("kruskal_wallis", NAN, NAN)
    res = _quiet(_st.kruskal, *samples)
    if res is None or not np.isfinite(res.statistic):
        return TestResult("kruskal_wallis", NAN, NAN)
    return TestResult("kruskal_wallis", float(res.statistic), float(res.pvalue), float(len(samples) - 1))


def welch_anova(samples) -> TestResult:
    """Welch's one-way ANOVA for unequal variances (Welch 1951).

    With weights w_i = n_i / s_i², W = Σ w_i and the weighted mean m = Σ w_i x̄_i / W:
    F = [Σ w_i (x̄_i − m)² / (k − 1)] / [1 + 2 (k − 2) Λ / (k² − 1)],
    Λ = Σ (1 − w_i/W)² / (n_i − 1), with df1 = k − 1 and df2 = (k² − 1) / (3 Λ).

    Returns NaN when a group has fewer than 2 values or zero variance (the weights are undefined).
    ``df`` holds df2 (df1 is k − 1).
    """
    samples = [_clean(s) for s in samples]
    k = len(samples)
    if k < 2 or any(len(s) < 2 for s in samples):
        return TestResult("welch_anova", NAN, NAN)
    n = np.array([len(s) for s in samples], dtype=float)
    means = np.array([s.mean() for s in samples])
    var = np.array([s.var(ddof=1) for s in samples])
    if np.any(var <= 0):
        return TestResult("welch_anova", NAN, NAN)
    w = n / var
    big_w = w.sum()
    grand = (w * means).sum() / big_w
    lam = ((1 - w / big_w) ** 2 / (n - 1)).sum()
    numerator = (w * (means - grand) ** 2).sum() / (k - 1)
    denominator = 1 + 2 * (k - 2) * lam / (k**2 - 1)
    f_stat = numerator / denominator
    df2 = (k**2 - 1) / (3 * lam)
    p = float(_st.f.sf(f_stat, k - 1, df2))
    return TestResult("welch_anova", float(f_stat), p, float(df2))


def holm(pvalues) -> list[float]:
    """Holm step-down adjusted p-values (NaNs stay NaN and do not count in the family size).

    Sorted ascending p_(1..m): p_adj_(i) = max_{j<=i} min(1, (m − j + 1) p_(j)).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, NAN)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    running = 0.0
    for rank, idx in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return [float(v) for v in out]


@dataclass(frozen=True)
class EffectSize:
    """Hedges' g of (b − a) with its 95 % confidence interval."""

    g: float
    ci_low: float
    ci_high: float


def hedges_g(a, b) -> EffectSize:
    """Hedges' g of ``b`` relative to ``a`` (positive when b's mean is larger), with a 95 % normal CI.

    g = J · (x̄_b − x̄_a) / s_pooled, J = 1 − 3 / (4 (n_a + n_b) − 9);
    SE = sqrt((n_a + n_b) / (n_a n_b) + g² / (2 (n_a + n_b))); CI = g ± 1.96 SE (Hedges & Olkin 1985).
    """
    a, b = _clean(a), _clean(b)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return EffectSize(NAN, NAN, NAN)
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return EffectSize(NAN, NAN, NAN)
    j = 1 - 3 / (4 * (na + nb) - 9)
    g = j * (b.mean() - a.mean()) / pooled
    se = math.sqrt((na + nb) / (na * nb) + g**2 / (2 * (na + nb)))
    return EffectSize(float(g), float(g - Z_95 * se), float(g + Z_95 * se))


def paired_effect(a, b) -> EffectSize:
    """Hedges' g_z of the pairs (a[i], b[i]): the differences' mean over their SD, bias-corrected, with a 95 %
    normal CI; positive when a exceeds b (as `paired_t`'s t). NaN for fewer than 2 pairs or constant differences.

    g_z = J · mean(d) / sd(d), d = a − b, J = 1 − 3 / (4 (n − 1) − 1); SE = sqrt(1 / n + g_z² / (2 n))
    (the standardized mean difference of a paired design, Lakens 2013, with Hedges' small-sample correction).
    """
    a, b = _pairs(a, b)
    n = len(a)
    if n < 2 or np.ptp(a - b) == 0:
        return EffectSize(NAN, NAN, NAN)
    d = a - b
    j = 1 - 3 / (4 * (n - 1) - 1)
    g = j * d.mean() / d.std(ddof=1)
    se = math.sqrt(1 / n + g**2 / (2 * n))
    return EffectSize(float(g), float(g - Z_95 * se), float(g + Z_95 * se))


def describe(sample) -> dict:
    """n, mean, sd, sem, median, q1, q3, min, max of the finite values (sd with ddof=1; NaN when undefined)."""
    a = _clean(sample)
    n = len(a)
    if n == 0:
        return {"n": 0, "mean": NAN, "sd": NAN, "sem": NAN, "median": NAN, "q1": NAN, "q3": NAN, "min": NAN,
                "max": NAN}
    sd = float(a.std(ddof=1)) if n > 1 else NAN
    q1, median, q3 = (float(v) for v in np.percentile(a, [25, 50, 75]))
    return {"n": n, "mean": float(a.mean()), "sd": sd, "sem": sd / math.sqrt(n) if n > 1 else NAN, "median": median,
            "q1": q1, "q3": q3, "min": float(a.min()), "max": float(a.max())}


def stars(p: float) -> str:
    """Significance stars: * < 0.05, ** < 0.01, *** < 0.001, **** < 0.0001, 'ns' otherwise, '' for NaN."""
    if not np.isfinite(p):
        return ""
    for cut, mark in ((1e-4, "****"), (1e-3, "***"), (1e-2, "**"), (0.05, "*")):
        if p < cut:
            return mark
    return "ns"
