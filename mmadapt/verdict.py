"""The verdict on step-2 curves: pure functions of evaluations at equal FLOP marks (no files, no plots).

A curve is a list of evaluations ``{"flops": cumulative step-2 FLOPs, KEY: test figure, "dev_" + KEY:
dev figure, ...}``, the first at step 0. Every "best" is the evaluation with the highest *dev* figure,
scored on *test*; "final" is the last evaluation's test figure.

"Reaches" is read within the test set's own noise, so that no single noisy mark can make a crossing or
cause a miss: a path reaches the standard final when it is at or above ``standard final - tolerance``
from some mark *on* (every later mark stays there), where the tolerance is the half-width of the
standard final's 95% (Wilson) interval over the test examples. The plain first crossing (the first
mark at or above the standard final itself) is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

Z95 = 1.959964  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Criteria:
    """What "met" means. Figures are fractions (0.9 = 90%)."""
    above_chance: float = 0.15  # both paths' bests, and the standard final, at least this far above chance
    best_gap: float = 0.02  # MiniJoint's best within this of the standard's
    saving: float = 2.0  # MiniJoint reaches the standard final with at least this factor fewer FLOPs
    learned: float = 0.90  # task models that learn the task: mean source accuracy at least this


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` measured on ``n`` examples."""
    if n <= 0:
        raise ValueError(f"an interval needs examples (n={n})")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def noise_tolerance(p: float, n: int) -> float:
    """Half the width of the 95% interval of ``p`` on ``n`` examples: how far a figure moves by chance."""
    lo, hi = wilson_interval(p, n)
    return (hi - lo) / 2


def _after_step0(curve: list) -> list:
    return [r for r in curve if r["flops"] > 0]


def improves(value, best, higher_is_better: bool = True) -> bool:
    """The one rule for a best, in step 2 (the pack's best embeddings) and in every report: a strictly
    better figure than the best so far, so the earliest of equals stays best."""
    return value is not None and (best is None or (value > best if higher_is_better else value < best))


def dev_best(curve: list, key: str) -> dict:
    """The evaluation after step 0 with the highest dev figure (the earliest of ties). A curve without
    the dev figure is an error: the test figure never stands in for it."""
    after = _after_step0(curve)
    if not after:
        raise ValueError(f"no evaluation after step 0 to choose a best {key} from")
    missing = [r["flops"] for r in after if r.get("dev_" + key) is None]
    if missing:
        raise ValueError(f"the evaluation at {missing[0]:.4g} FLOPs has no dev_{key}: a best is chosen on a dev "
                         "split; fix: run step 2 with the dev files (--task_dev_file / --parallel_dev_file)")
    best = after[0]
    for record in after[1:]:
        if improves(record["dev_" + key], best["dev_" + key]):
            best = record
    return best


def first_reaching(curve: list, key: str, target: float):
    """FLOPs of the first evaluation at or above ``target`` (None if never)."""
    for rec in curve:
        if rec.get(key) is not None and rec[key] >= target - 1e-9:
            return rec["flops"]
    return None


def saving_to_reach(reference: list, curve: list, key: str, tolerance: float = 0.0) -> dict:
    """How much less compute ``curve`` needs to reach ``reference``'s final test figure.

    Held crossing: the first mark from which every later mark is at or above ``final - tolerance``; the
    crossing lies between it and the mark before, so the saving lies in [budget / its FLOPs, budget /
    the previous mark's FLOPs] (no upper bound at the first mark). First crossing: the first mark at or
    above the final itself, as a single mark shows it. Step 0 never counts (both paths start there)."""
    final, budget = reference[-1][key], reference[-1]["flops"]
    after = _after_step0(curve)
    held = None
    for i in range(len(after) - 1, -1, -1):  # walk back while the marks stay at or above the bar
        if after[i][key] >= final - tolerance - 1e-9:
            held = i
        else:
            break
    first = next((i for i, r in enumerate(after) if r[key] >= final - 1e-9), None)

    def at(i):
        if i is None:
            return {"flops_to_reach": None, "saving": None, "saving_upper_bound": None, "mark": None}
        previous = after[i - 1]["flops"] if i else None
        return {"flops_to_reach": after[i]["flops"], "saving": budget / after[i]["flops"],
                "saving_upper_bound": budget / previous if previous else None, "mark": i + 1}

    return {**at(held), "target": final, "tolerance": tolerance, "first_crossing": at(first)}


def verdict(curves: dict, key: str, chance: float, test_examples: int, source_accuracy=None,
            criteria: Criteria = Criteria()) -> dict:
    """The numbers the method stands on and the checks, every one of which must hold for "met".

    ``curves``: {"full": ..., "mini": ..., optionally "minipost": ...}; ``test_examples``: the size of the
    test set behind ``key`` (for the intervals and the tolerance); ``source_accuracy``: the task models'
    mean source accuracy (None: the check is left out, for figures without task models)."""
    full, mini = curves["full"], curves["mini"]
    if len(full) < 3 or len(mini) < 2:
        raise ValueError(f"the verdict needs at least two marks after step 0 (standard has {len(full) - 1})")
    best = {p: dev_best(c, key) for p, c in curves.items()}
    final = full[-1][key]
    tol = noise_tolerance(final, test_examples)
    reach = {p: saving_to_reach(full, curves[p], key, tol) for p in curves if p != "full"}
    # "final" is final: the standard's last two marks agree, and its final holds its (dev-chosen) best,
    # both within the test noise; a path that peaks and collapses, or still climbs, fails here.
    converged = abs(final - full[-2][key]) <= tol + 1e-9
    holds_best = final >= best["full"][key] - tol - 1e-9
    checks = {
        "both_well_above_chance": min(best["full"][key], best["mini"][key], final) >= chance + criteria.above_chance,
        "mini_best_within_2_points": best["mini"][key] >= best["full"][key] - criteria.best_gap - 1e-9,
        "mini_reaches_standard_final_with_2x_fewer_flops":
            reach["mini"]["saving"] is not None and reach["mini"]["saving"] >= criteria.saving,
        "standard_converged": converged and holds_best,
    }
    if source_accuracy is not None:
        checks["task_models_learn_the_task"] = source_accuracy >= criteria.learned

    def interval(p):
        return list(wilson_interval(p, test_examples))

    out = {
        "metric": key, "chance": chance, "selection": "dev", "scored_on": "test", "test_examples": test_examples,
        "criteria": asdict(criteria), "tolerance": tol,
        "standard_final": final, "mini_final": mini[-1][key],
        "standard_final_interval": interval(final), "mini_final_interval": interval(mini[-1][key]),
        "standard_best": best["full"][key], "mini_best": best["mini"][key],
        "standard_best_interval": interval(best["full"][key]), "mini_best_interval": interval(best["mini"][key]),
        "standard_best_flops": best["full"]["flops"], "mini_best_flops": best["mini"]["flops"],
        "best_gap_points": 100 * (best["full"][key] - best["mini"][key]),
        "mini_flops_to_reach_standard_final": reach["mini"]["flops_to_reach"],
        "standard_flops": full[-1]["flops"],
        "flops_saving_to_reach": reach["mini"]["saving"],
        "flops_saving_upper_bound": reach["mini"]["saving_upper_bound"],
        "reach_mark": reach["mini"]["mark"],
        "first_crossing": reach["mini"]["first_crossing"],
        "mark_spacing_flops": full[1]["flops"] if len(full) > 1 else None,
        "standard_last_marks": [r[key] for r in full[-2:]],
        "standard_converged": converged, "standard_final_holds_best": holds_best,
        "checks": checks,
        "met": all(checks.values()),
    }
    if "minipost" in curves:
        out.update(minipost_final=curves["minipost"][-1][key], minipost_best=best["minipost"][key],
                   minipost_best_interval=interval(best["minipost"][key]),
                   minipost_flops_saving_to_reach=reach["minipost"]["saving"],
                   minipost_flops_saving_upper_bound=reach["minipost"]["saving_upper_bound"],
                   minipost_first_crossing=reach["minipost"]["first_crossing"])
    return out


def wall_clock_to_reach(reference: list, curve: list, reach: dict) -> dict:
    """Seconds of step-2 training (evaluation excluded) each path spent: the standard's whole run and
    ``curve``'s up to its held crossing (``reach`` from saving_to_reach), from the marks' ``train_seconds``."""
    total = reference[-1].get("train_seconds")
    at = next((r.get("train_seconds") for r in curve if r["flops"] == reach.get("flops_to_reach")), None)
    return {"standard_train_seconds": total, "seconds_to_reach": at,
            "wall_clock_saving": total / at if total and at else None}
