"""Group statistics against scipy and hand computations on known data."""

import math

import numpy as np
import pytest
from scipy import stats as st

from ctbone.report.stats import describe, hedges_g, holm, kruskal, mann_whitney, stars, welch_anova, welch_t
from ctbone.report.tables import baseline_change, group_stats, group_summary

A = [12.1, 13.4, 11.8, 14.2, 12.9]
B = [15.3, 16.1, 14.8, 17.9, 15.5, 16.6]
C = [13.0, 19.5, 11.1, 16.4]


def test_welch_t_matches_scipy():
    res = welch_t(A, B)
    ref = st.ttest_ind(A, B, equal_var=False)
    # same computation path: agreement to float rounding
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p == pytest.approx(ref.pvalue, rel=1e-12)
    # Welch-Satterthwaite df by hand
    va, vb = np.var(A, ddof=1) / 5, np.var(B, ddof=1) / 6
    assert res.df == pytest.approx((va + vb) ** 2 / (va**2 / 4 + vb**2 / 5), rel=1e-12)


def test_mann_whitney_and_kruskal_match_scipy():
    mw = mann_whitney(A, B)
    ref = st.mannwhitneyu(A, B, alternative="two-sided")
    assert (mw.statistic, mw.p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    kw = kruskal([A, B, C])
    ref = st.kruskal(A, B, C)
    assert (kw.statistic, kw.p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)


def test_welch_anova_by_hand():
    # Welch (1951) written out step by step on the three samples
    groups = [np.array(g) for g in (A, B, C)]
    k = 3
    n = np.array([len(g) for g in groups], float)
    m = np.array([g.mean() for g in groups])
    w = n / np.array([g.var(ddof=1) for g in groups])
    mw = (w * m).sum() / w.sum()
    lam = sum((1 - wi / w.sum()) ** 2 / (ni - 1) for wi, ni in zip(w, n))
    f_hand = ((w * (m - mw) ** 2).sum() / (k - 1)) / (1 + 2 * (k - 2) / (k**2 - 1) * lam)
    df2 = (k**2 - 1) / (3 * lam)
    res = welch_anova([A, B, C])
    assert res.statistic == pytest.approx(f_hand, rel=1e-12)
    assert res.df == pytest.approx(df2, rel=1e-12)
    assert res.p == pytest.approx(st.f.sf(f_hand, 2, df2), rel=1e-12)


def test_welch_anova_two_groups_equals_welch_t_squared():
    # with k = 2 Welch's F is exactly t² of Welch's t-test with the same df (an independent identity)
    res, t = welch_anova([A, B]), welch_t(A, B)
    assert res.statistic == pytest.approx(t.statistic**2, rel=1e-10)
    assert res.df == pytest.approx(t.df, rel=1e-10)
    assert res.p == pytest.approx(t.p, rel=1e-10)


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 with running max: 0.02, 0.03, 0.06, 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])
    out = holm([0.01, math.nan, 0.02])
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def test_hedges_g_and_ci_by_hand():
    a, b = np.array(A), np.array(B)
    sp = math.sqrt((4 * a.var(ddof=1) + 5 * b.var(ddof=1)) / 9)
    j = 1 - 3 / (4 * 11 - 9)
    g = j * (b.mean() - a.mean()) / sp
    se = math.sqrt(11 / 30 + g**2 / 22)
    eff = hedges_g(A, B)
    assert eff.g == pytest.approx(g, rel=1e-12) and eff.g > 0
    assert (eff.ci_low, eff.ci_high) == pytest.approx((g - 1.959964 * se, g + 1.959964 * se), rel=1e-6)


def test_degenerate_samples_give_nan_without_warnings():
    assert math.isnan(welch_t([1.0], [2.0, 3.0]).p)
    assert math.isnan(welch_t([1.0, 1.0], [1.0, 1.0]).p)
    assert math.isnan(welch_anova([[1, 1], [2, 3], [4, 5]]).statistic)
    assert math.isnan(kruskal([[1, 1], [1, 1]]).p)
    assert math.isnan(hedges_g([1, 1], [1, 1]).g)
    assert describe([]) ["n"] == 0
    assert stars(0.004) == "**" and stars(0.2) == "ns" and stars(math.nan) == ""


def test_describe_matches_numpy():
    d = describe(C + [math.nan])
    assert d["n"] == 4
    assert d["sd"] == pytest.approx(np.std(C, ddof=1))
    assert d["sem"] == pytest.approx(np.std(C, ddof=1) / 2)
    assert (d["q1"], d["median"], d["q3"]) == pytest.approx(tuple(np.percentile(C, [25, 50, 75])))


def _rows(groups):
    return [{"animal_id": f"{g}{i}", "group": g, "status": "ok", "m_mm3": v}
            for g, vals in groups.items() for i, v in enumerate(vals)]


def test_group_stats_two_groups_rows():
    rows = _rows({"ctl": A, "trt": B}) + [{"animal_id": "x", "group": "trt", "status": "error", "m_mm3": 99.0}]
    out = group_stats(rows, ["m_mm3"])
    assert [r["test"] for r in out] == ["welch_t", "mann_whitney_u"]
    t = out[0]
    assert (t["group_a"], t["group_b"], t["n_a"], t["n_b"]) == ("trt", "ctl", 6, 5)  # failed row left out
    assert t["p"] == pytest.approx(st.ttest_ind(B, A, equal_var=False).pvalue)
    assert t["statistic"] > 0 and t["hedges_g"] > 0  # trt > ctl
    assert t["p_adj"] == t["p"]  # a family of one


def test_group_stats_three_groups_omnibus_and_holm_vs_control():
    rows = _rows({"ctl": A, "trt": B, "hi": C})
    out = group_stats(rows, ["m_mm3"], control="ctl")
    tests = [(r["comparison"], r["test"]) for r in out]
    assert tests[:2] == [("omnibus", "welch_anova"), ("omnibus", "kruskal_wallis")]
    welch = [r for r in out if r["test"] == "welch_t"]
    assert [r["comparison"] for r in welch] == ["trt vs ctl", "hi vs ctl"]
    assert [r["p_adj"] for r in welch] == pytest.approx(holm([r["p"] for r in welch]))
    assert out[0]["p"] == pytest.approx(welch_anova([A, B, C]).p)


def test_group_summary_and_baseline_change():
    rows = []
    for animal, base, later in (("a", 10.0, 15.0), ("b", 20.0, 10.0)):
        rows.append({"animal_id": animal, "group": "g", "timepoint": "0", "status": "ok", "m_mm3": base})
        rows.append({"animal_id": animal, "group": "g", "timepoint": "2", "status": "ok", "m_mm3": later})
    summary = group_summary(rows, ["m_mm3"])
    assert [(r["timepoint"], r["n"], r["mean"]) for r in summary] == [("0", 2, 15.0), ("2", 2, 12.5)]
    change = baseline_change(rows, ["m_mm3"])
    got = {(c["animal_id"], c["timepoint"]): c["m_mm3_change_pct"] for c in change}
    # (15-10)/10 = +50 %, (10-20)/20 = -50 %
    assert got == {("a", "0"): 0.0, ("a", "2"): 50.0, ("b", "0"): 0.0, ("b", "2"): -50.0}


def test_groups_without_spread_leave_t_and_g_empty():
    # 0, 0 vs 2, 2: t and g are undefined (zero pooled SD); the rows stay, with NaN rather than invented numbers
    rows = _rows({"ctl": [0.0, 0.0], "trt": [2.0, 2.0]})
    welch = next(r for r in group_stats(rows, ["m_mm3"]) if r["test"] == "welch_t")
    assert math.isnan(welch["p"]) and math.isnan(welch["hedges_g"]) and welch["n_a"] == 2


def test_paired_tests_against_scipy_and_their_degenerate_cases():
    from scipy import stats as st

    from ctbone.report.stats import paired_t, wilcoxon_signed_rank

    tumour, contra = [1.0, 2.0, 3.0, 4.0, 6.0], [0.0, 1.0, 1.0, 2.0, 5.5]
    res = paired_t(tumour, contra)
    ref = st.ttest_rel(tumour, contra)
    assert res.statistic == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue) and res.df == 4
    assert res.statistic > 0  # the first sample higher
    w = wilcoxon_signed_rank(tumour, contra)
    assert w.p == pytest.approx(st.wilcoxon(tumour, contra).pvalue)
    # a pair with a missing value is dropped; one pair, or differences all alike, give no test
    assert paired_t([1.0, float("nan"), 3.0], [0.0, 1.0, 1.0]).df == 1
    assert np.isnan(paired_t([1.0], [0.0]).p) and np.isnan(paired_t([1.0, 2.0], [0.0, 1.0]).p)
    assert np.isnan(wilcoxon_signed_rank([1.0, 2.0], [1.0, 2.0]).p)
    from ctbone.report.stats import paired_effect

    assert np.isnan(paired_effect([1.0, 2.0], [0.0, 1.0]).g) and np.isnan(paired_effect([1.0], [0.0]).g)
    assert paired_effect([3.0, 5.0, 4.0], [1.0, 2.0, 2.0]).g > 0 > paired_effect([1.0, 2.0, 2.0], [3.0, 5.0, 4.0]).g


def test_group_stats_compare_the_two_limbs_of_each_group_paired_by_animal():
    from scipy import stats as st

    from ctbone.report.tables import group_stats

    rows = []
    values = {"A1": (5.0, 1.0), "A2": (6.0, 2.5), "A3": (7.5, 2.0), "A4": (6.5, 3.0),
              "B1": (2.0, 1.0), "B2": (2.5, 2.0), "B3": (1.5, 1.2)}
    for animal, (right, left) in values.items():
        group = "ctl" if animal.startswith("A") else "trt"
        rows += [{"status": "ok", "animal_id": animal, "group": group, "limb": "R", "timepoint": "", "x": right},
                 {"status": "ok", "animal_id": animal, "group": group, "limb": "L", "timepoint": "", "x": left}]
    stats = group_stats(rows, ["x"], control="ctl")
    paired = {(r["group_a"], r["test"]): r for r in stats if r["comparison"] == "R vs L (paired)"}
    assert set(paired) == {(g, t) for g in ("ctl", "trt") for t in ("paired_t", "wilcoxon_signed_rank")}
    ctl = paired[("ctl", "paired_t")]
    assert ctl["limb"] == "R vs L" and ctl["n_a"] == ctl["n_b"] == 4
    assert ctl["p"] == pytest.approx(st.ttest_rel([5.0, 6.0, 7.5, 6.5], [1.0, 2.5, 2.0, 3.0]).pvalue)
    assert ctl["p_adj"] >= ctl["p"]  # Holm over the two groups
    # the paired effect size: Hedges' g_z of the differences, by hand
    d = np.array([5.0, 6.0, 7.5, 6.5]) - np.array([1.0, 2.5, 2.0, 3.0])
    g_z = (1 - 3 / (4 * 3 - 1)) * d.mean() / d.std(ddof=1)
    se = math.sqrt(1 / 4 + g_z ** 2 / 8)
    assert ctl["hedges_g"] == pytest.approx(g_z) and ctl["ci_low"] == pytest.approx(g_z - 1.959963984540054 * se)
    assert paired[("ctl", "wilcoxon_signed_rank")]["hedges_g"] == pytest.approx(g_z)
    # and the unpaired comparisons stay within a limb: trt vs ctl on R, then on L
    assert {r["limb"] for r in stats if r["comparison"] == "trt vs ctl"} == {"R", "L"}


def test_limb_difference_is_each_animals_first_limb_against_its_other():
    from ctbone.report.tables import limb_difference

    rows = [{"status": "ok", "animal_id": "A1", "group": "g", "limb": "R", "timepoint": "", "x": 6.0, "y": 0.0},
            {"status": "ok", "animal_id": "A1", "group": "g", "limb": "L", "timepoint": "", "x": 4.0, "y": 0.0},
            {"status": "ok", "animal_id": "A2", "group": "g", "limb": "R", "timepoint": "", "x": 3.0, "y": 1.0},
            {"status": "error", "animal_id": "A2", "group": "g", "limb": "L", "timepoint": "", "x": 1.0, "y": 1.0}]
    diff = {d["animal_id"]: d for d in limb_difference(rows, ["x", "y"], "R", "L")}
    assert diff["A1"]["x_limb_diff_pct"] == pytest.approx(50.0) and diff["A1"]["limb"] == "R vs L"
    assert np.isnan(diff["A1"]["y_limb_diff_pct"])  # a zero contralateral value: no ratio
    assert np.isnan(diff["A2"]["x_limb_diff_pct"])  # its other limb failed
    assert diff["A1"]["x_limb_diff_pct"] != limb_difference(rows, ["x"], "L", "R")[0]["x_limb_diff_pct"]
