"""Multiple-choice knapsack: every group (layer) picks exactly one option (cost, loss); minimise
the total loss with the total cost within a budget.

* :func:`greedy`: the standard MCKP greedy on each group's lower convex hull. Start from every
  group's cheapest hull option, then take the hull upgrades (one step along a hull: extra cost,
  loss saved) in decreasing efficiency (loss saved per unit cost); an upgrade that does not fit
  is skipped (the rest may). Its first skipped upgrade is the fractional item of the LP
  relaxation, so ``lp_loss <= optimum <= greedy loss <= lp_loss + that upgrade's loss saving``
  (:class:`Solution` carries ``lp_loss`` and ``gap``); when the LP solution is integral (no
  upgrade skipped, or the skipped one would be taken by a fraction 0) the greedy is optimal.
* :func:`dp`: exact dynamic programme over integer costs (for small instances and as the
  reference of tests/test_quant_mixed.py); :func:`dp_scaled` rounds real costs *up* onto a grid
  of ``units`` steps of the budget, so its answer is always feasible.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Group = Sequence[tuple[float, float]]  # (cost, loss) per option


@dataclass
class Solution:
    choice: list[int]  # option index per group
    cost: float
    loss: float
    lp_loss: float = -math.inf  # the LP relaxation's optimum (a lower bound of the optimum)
    gap: float = 0.0  # loss saving of the LP's fractional upgrade (0: LP integral)
    solver: str = ""  # which algorithm found it (quant.mixed records it in a plan)


def lower_hull(group: Group) -> list[int]:
    """Indices of the options on the lower convex hull of (cost, loss), by increasing cost and
    strictly decreasing loss (dominated and non-convex options dropped; ties: the first)."""
    order = sorted(range(len(group)), key=lambda i: (group[i][0], group[i][1], i))
    pts: list[int] = []
    for i in order:
        c, lo = group[i]
        if pts and c == group[pts[-1]][0]:
            continue  # same cost, loss not lower (sorted)
        if pts and lo >= group[pts[-1]][1]:
            continue  # dominated: costs more, saves nothing
        while len(pts) >= 2:
            (c1, l1), (c2, l2) = group[pts[-2]], group[pts[-1]]
            # drop pts[-1] if it lies on or above the segment pts[-2] -> i
            if (l2 - l1) * (c - c1) >= (lo - l1) * (c2 - c1):
                pts.pop()
            else:
                break
        pts.append(i)
    return pts


def _totals(groups: Sequence[Group], choice: list[int]) -> tuple[float, float]:
    return (
        float(sum(g[k][0] for g, k in zip(groups, choice, strict=True))),
        float(sum(g[k][1] for g, k in zip(groups, choice, strict=True))),
    )


def greedy(groups: Sequence[Group], budget: float) -> Solution | None:
    """The hull greedy (module docstring); None when even the cheapest choice exceeds budget."""
    hulls = [lower_hull(g) for g in groups]
    pos = [0] * len(groups)
    cost = sum(g[h[0]][0] for g, h in zip(groups, hulls, strict=True))
    if cost > budget * (1 + 1e-12) + 1e-12:
        return None
    heap: list[tuple[float, int, int]] = []

    def push(j: int) -> None:
        h, p = hulls[j], pos[j]
        if p + 1 < len(h):
            (c0, l0), (c1, l1) = groups[j][h[p]], groups[j][h[p + 1]]
            eff = (l0 - l1) / (c1 - c0)
            heapq.heappush(heap, (-eff, j, p))

    for j in range(len(groups)):
        push(j)
    lp_loss = None
    gap = 0.0
    loss = sum(g[h[0]][1] for g, h in zip(groups, hulls, strict=True))
    while heap:
        _, j, p = heapq.heappop(heap)
        (c0, l0), (c1, l1) = groups[j][hulls[j][p]], groups[j][hulls[j][p + 1]]
        dc, dl = c1 - c0, l0 - l1
        if cost + dc <= budget:
            cost += dc
            loss -= dl
            pos[j] = p + 1
            push(j)
            continue
        if lp_loss is None:  # the LP's fractional item: a fraction of this upgrade
            frac = max(budget - cost, 0.0) / dc
            lp_loss = loss - frac * dl
            gap = dl if frac > 0 else 0.0
        # skipped: this group's later upgrades are less efficient and cost more; stop it here
    choice = [h[p] for h, p in zip(hulls, pos, strict=True)]
    c, lo = _totals(groups, choice)
    if lp_loss is None:
        lp_loss = lo
    return Solution(choice, c, lo, lp_loss, gap)


def dp(groups: Sequence[Sequence[tuple[int, float]]], budget: int) -> Solution | None:
    """Exact optimum for non-negative integer costs; None when infeasible. O(groups x budget x
    options) time and memory."""
    budget = int(budget)
    if budget < 0:
        return None
    inf = math.inf
    best = np.full(budget + 1, inf)
    best[0] = 0.0  # best[c]: least loss with total cost exactly c
    picks = []
    for g in groups:
        new = np.full(budget + 1, inf)
        pick = np.full(budget + 1, -1, dtype=np.int64)
        for k, (c, lo) in enumerate(g):
            c = int(c)
            if c < 0:
                raise ValueError("dp needs non-negative integer costs")
            if c > budget:
                continue
            cand = np.full(budget + 1, inf)
            cand[c:] = best[: budget + 1 - c] + lo
            better = cand < new
            new[better] = cand[better]
            pick[better] = k
        best = new
        picks.append(pick)
    if not np.isfinite(best).any():
        return None
    at = int(np.argmin(best))
    choice = [0] * len(groups)
    for j in range(len(groups) - 1, -1, -1):
        k = int(picks[j][at])
        choice[j] = k
        at -= int(groups[j][k][0])
    c, lo = _totals(groups, choice)
    return Solution(choice, c, lo, lo, 0.0)


def dp_scaled(groups: Sequence[Group], budget: float, units: int = 4000) -> Solution | None:
    """:func:`dp` on costs rounded up to ``budget / units`` steps (feasible, near optimal)."""
    if budget <= 0:
        return None
    step = budget / units
    ig = [[(math.ceil(c / step - 1e-9), lo) for c, lo in g] for g in groups]
    s = dp(ig, units)
    if s is None:
        return None
    c, lo = _totals(groups, s.choice)
    return Solution(s.choice, c, lo, -math.inf, 0.0)
