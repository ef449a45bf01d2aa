"""The verdict on hand-made curves whose right answers are known (mmadapt/verdict.py)."""

import math

import pytest

from mmadapt.verdict import (dev_best, improves, noise_tolerance, saving_to_reach, verdict, wall_clock_to_reach,
                             wilson_interval)

KEY = "zero_shot_accuracy"


def curve(test, dev=None, step0=0.40, unit=10.0, seconds=None):
    """Step 0, then a mark every ``unit`` FLOPs with these test (and dev) figures."""
    dev = test if dev is None else dev
    marks = [{"flops": 0.0, KEY: step0, "dev_" + KEY: step0, "train_seconds": 0.0}]
    for i, (t, d) in enumerate(zip(test, dev), 1):
        marks.append({"flops": unit * i, KEY: t, "dev_" + KEY: d,
                      "train_seconds": (seconds or unit) * i})
    return marks


GOOD_STANDARD = [0.60, 0.70, 0.80, 0.85, 0.87, 0.88, 0.89, 0.90, 0.90, 0.90]  # final 0.90, converged


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0.5, 100)
    assert (lo, hi) == (pytest.approx(0.40383, abs=1e-4), pytest.approx(0.59617, abs=1e-4))
    # the defining property: the ends are the proportions p0 whose score test is exactly at z
    lo, hi = wilson_interval(0.9, 900)  # 810 of 900
    for p0 in (lo, hi):
        assert abs(0.9 - p0) == pytest.approx(1.959964 * math.sqrt(p0 * (1 - p0) / 900), rel=1e-6)
    assert lo < 0.9 < hi and noise_tolerance(0.9, 900) == pytest.approx((hi - lo) / 2)
    assert noise_tolerance(0.9, 10000) < 0.006  # a test set of 10k reads about +-0.6 points
    assert wilson_interval(1.0, 50)[1] == pytest.approx(1.0) and wilson_interval(0.0, 50)[0] == pytest.approx(0.0)
    assert wilson_interval(1.0, 50)[0] < 1.0  # all correct still has an interval below it


def test_a_good_instance_is_met_with_the_saving_read_off_by_hand():
    full = curve(GOOD_STANDARD)
    mini = curve([0.80, 0.86, 0.90, 0.91, 0.91, 0.92, 0.92, 0.92, 0.92, 0.92])
    v = verdict({"full": full, "mini": mini}, KEY, 1 / 3, 10000, source_accuracy=0.95)
    # bar = 0.90 - tolerance (0.0059): the mini path holds it from mark 3 (0.90) on; mark 2 (0.86) is below
    assert v["reach_mark"] == 3 and v["flops_saving_to_reach"] == pytest.approx(100 / 30)
    assert v["flops_saving_upper_bound"] == pytest.approx(100 / 20)
    assert v["first_crossing"]["mark"] == 3
    assert v["checks"] == {"both_well_above_chance": True, "mini_best_within_2_points": True,
                           "mini_reaches_standard_final_with_2x_fewer_flops": True, "standard_converged": True,
                           "task_models_learn_the_task": True}
    assert v["met"] is True


def test_a_one_mark_crossing_is_not_a_reach():
    full = curve(GOOD_STANDARD)
    # one noisy mark (3) jumps above the final 0.90, the next falls back 3 points: the crossing is held only
    # from mark 6 on, which is under the 2x line (100 / 60 = 1.67x)
    mini = curve([0.80, 0.84, 0.905, 0.87, 0.88, 0.90, 0.91, 0.91, 0.90, 0.91])
    v = verdict({"full": full, "mini": mini}, KEY, 1 / 3, 10000, source_accuracy=0.95)
    assert v["first_crossing"]["mark"] == 3 and v["first_crossing"]["saving"] == pytest.approx(100 / 30)
    assert v["reach_mark"] == 6 and v["flops_saving_to_reach"] == pytest.approx(100 / 60)
    assert v["checks"]["mini_reaches_standard_final_with_2x_fewer_flops"] is False and v["met"] is False


def test_a_miss_within_the_test_noise_is_not_a_miss():
    # both paths converge near 93%; MiniJoint never touches the standard's final 93.3% (best 93.1%), but is
    # within its 900-example noise (+-1.7 points) from its third mark on
    standard = [0.80, 0.86, 0.89, 0.91, 0.92, 0.925, 0.93, 0.931, 0.932, 0.933]
    mini = [0.88, 0.905, 0.92, 0.925, 0.928, 0.93, 0.931, 0.93, 0.931, 0.93]
    v = verdict({"full": curve(standard), "mini": curve(mini)}, KEY, 1 / 3, 900, source_accuracy=0.95)
    assert v["first_crossing"]["mark"] is None  # never at or above 93.3
    assert v["tolerance"] == pytest.approx(noise_tolerance(0.933, 900)) and 0.015 < v["tolerance"] < 0.018
    # bar 0.933 - 0.0163 = 0.9167: mark 2 (0.905) is below, mark 3 (0.92) and all after are above
    assert v["reach_mark"] == 3 and v["flops_saving_to_reach"] == pytest.approx(100 / 30)
    assert v["met"] is True


def test_a_standard_path_at_chance_fails_whatever_the_saving():
    full = curve([0.34, 0.35, 0.33, 0.34, 0.35, 0.34, 0.33, 0.34, 0.34, 0.34], step0=0.34)
    mini = curve([0.60, 0.80, 0.85, 0.86, 0.87, 0.88, 0.88, 0.88, 0.88, 0.88])
    v = verdict({"full": full, "mini": mini}, KEY, 1 / 3, 10000, source_accuracy=0.95)
    assert v["flops_saving_to_reach"] == pytest.approx(10.0)  # reaching chance is trivial...
    assert v["checks"]["both_well_above_chance"] is False and v["met"] is False  # ...and says nothing


def test_a_standard_path_that_peaks_and_collapses_fails():
    # dev and test both peak at mark 4 (0.88), then the path collapses to 0.50 and stays there
    full = curve([0.70, 0.80, 0.85, 0.88, 0.70, 0.60, 0.52, 0.50, 0.50, 0.50])
    mini = curve([0.80, 0.86, 0.88, 0.88, 0.88, 0.88, 0.88, 0.88, 0.88, 0.88])
    v = verdict({"full": full, "mini": mini}, KEY, 1 / 3, 10000, source_accuracy=0.95)
    assert v["standard_best"] == 0.88 and v["standard_final"] == 0.50
    assert v["standard_converged"] is True  # the last two marks agree...
    assert v["standard_final_holds_best"] is False  # ...but the final is far under its own best
    assert v["checks"]["standard_converged"] is False and v["met"] is False
    # a standard path still climbing at the end is not converged either
    climbing = curve([0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.88, 0.91])
    assert verdict({"full": climbing, "mini": mini}, KEY, 1 / 3, 10000, 0.95)["checks"]["standard_converged"] is False


def test_task_models_that_did_not_learn_fail_the_verdict():
    full, mini = curve(GOOD_STANDARD), curve([0.90] * 10)
    assert verdict({"full": full, "mini": mini}, KEY, 1 / 3, 10000, source_accuracy=0.95)["met"] is True
    v = verdict({"full": full, "mini": mini}, KEY, 1 / 3, 10000, source_accuracy=0.85)
    assert v["checks"]["task_models_learn_the_task"] is False and v["met"] is False


def test_the_best_is_chosen_on_dev_and_scored_on_test():
    test = [0.70, 0.75, 0.80, 0.95, 0.80]
    dev = [0.70, 0.90, 0.80, 0.75, 0.80]  # dev peaks at mark 2, test at mark 4
    best = dev_best(curve(test, dev), KEY)
    assert best["flops"] == 20.0 and best[KEY] == 0.75
    # ties on dev: the earliest; step 0 never counts even when its dev figure is the highest
    tied = curve([0.6, 0.7, 0.8], dev=[0.5, 0.5, 0.4], step0=0.4)
    tied[0]["dev_" + KEY] = 0.99
    assert dev_best(tied, KEY)["flops"] == 10.0


def test_one_rule_for_a_best_higher_or_lower_is_better():
    assert improves(0.5, None) and not improves(None, 0.5) and not improves(None, None)
    assert improves(0.6, 0.5) and not improves(0.5, 0.5) and not improves(0.4, 0.5)  # equal: the earlier stays
    assert improves(2.0, 2.5, higher_is_better=False) and not improves(2.5, 2.5, higher_is_better=False)
    assert not improves(3.0, 2.5, higher_is_better=False)  # a loss: lower is better


def test_a_missing_dev_figure_is_an_error_not_a_fall_back_to_test():
    c = curve([0.70, 0.80, 0.85])
    del c[2]["dev_" + KEY]
    with pytest.raises(ValueError, match="dev_zero_shot_accuracy.*fix: run step 2 with the dev files"):
        dev_best(c, KEY)
    with pytest.raises(ValueError, match="dev_zero_shot_accuracy"):
        verdict({"full": curve(GOOD_STANDARD), "mini": c}, KEY, 1 / 3, 900, 0.95)


def test_never_reaching_and_a_last_mark_dip():
    full = curve(GOOD_STANDARD)
    r = saving_to_reach(full, curve([0.80, 0.82, 0.84, 0.85, 0.85, 0.86, 0.86, 0.86, 0.86, 0.86]), KEY, 0.01)
    assert r["saving"] is None and r["mark"] is None and r["first_crossing"]["mark"] is None
    # above the bar everywhere but the last mark: no held crossing, though the first crossing is mark 1
    dip = curve([0.91, 0.91, 0.91, 0.91, 0.91, 0.91, 0.91, 0.91, 0.91, 0.85])
    r = saving_to_reach(full, dip, KEY, 0.01)
    assert r["saving"] is None and r["first_crossing"]["mark"] == 1 and r["first_crossing"]["saving"] == 10.0


def test_wall_clock_to_reach_reads_the_marks_training_seconds():
    full = curve(GOOD_STANDARD, unit=10.0, seconds=4.0)  # the standard trains 40 s in all
    mini = curve([0.80, 0.86, 0.90, 0.91, 0.91, 0.92, 0.92, 0.92, 0.92, 0.92], unit=10.0, seconds=2.5)
    reach = saving_to_reach(full, mini, KEY, 0.005)
    w = wall_clock_to_reach(full, mini, reach)
    assert w == {"standard_train_seconds": 40.0, "seconds_to_reach": 7.5,
                 "wall_clock_saving": pytest.approx(40 / 7.5)}
    never = saving_to_reach(full, curve([0.5] * 10), KEY, 0.005)
    assert wall_clock_to_reach(full, curve([0.5] * 10), never)["wall_clock_saving"] is None


def test_how_a_start_and_the_mini_model_combine():
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location(
        "starts", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "starts.py"))
    starts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(starts)
    assert starts.combine(2.0, 2.0, 4.0).startswith("multiply")
    assert starts.combine(3.0, 2.0, 3.1).startswith("overlap")
    assert starts.combine(3.0, 2.0, 4.0).startswith("in between")  # above 1.2 x 3, below 0.8 x 6
    assert starts.combine(None, 2.0, 4.0).startswith("not measurable")
