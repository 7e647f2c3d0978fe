"""The tables of docs/results.md's issue-12 section, from the CSVs beside this file (copied
from the experiments' folders): per point and policy the mean and 95% interval over the
seeds, and the paper's comparisons ("T2DRL is x% better than ..."): for the utility (lower
is better) 1 - U_t2drl / U_other, for the hit ratio h_t2drl / h_other - 1.

    python docs/data/issue12/tables.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
ORDER = ["optimal", "t2drl", "ddpg-t2drl", "schrs", "rcars"]


def _cell(row: pd.Series, metric: str, digits: int) -> str:
    return f"{row[metric]:.{digits}f} ± {row[f'{metric}_ci95']:.{digits}f}"


def sweep_table(name: str, key: str, unit: str) -> None:
    summary = pd.read_csv(HERE / f"{name}_summary.csv")
    for metric, digits in (("utility", 2), ("hit_ratio", 3)):
        print(f"\n{name}: {metric} (mean ± 95% CI over 3 seeds)\n")
        points = sorted(summary[key].unique())
        print("| policy | " + " | ".join(f"{unit}{p:g}" for p in points) + " |")
        print("|---" * (len(points) + 1) + "|")
        for policy in ORDER:
            rows = summary[summary["policy"] == policy].set_index(key)
            if rows.empty:
                continue
            print(
                f"| {policy} | "
                + " | ".join(_cell(rows.loc[p], metric, digits) for p in points)
                + " |"
            )
    print(f"\n{name}: T2DRL better than ... (utility / hit ratio), ordering by utility\n")
    print("| point | DDPG-based | SCHRS | RCARS | optimiser | ordering (best first) |")
    print("|---|---|---|---|---|---|")
    for point, rows in summary.groupby(key):
        rows = rows.set_index("policy")
        t = rows.loc["t2drl"]
        cells = []
        for other in ("ddpg-t2drl", "schrs", "rcars", "optimal"):
            o = rows.loc[other]
            utility = 1 - t["utility"] / o["utility"]
            cells.append(f"{utility:+.2%} / {t['hit_ratio'] / o['hit_ratio'] - 1:+.1%}")
        ordering = " < ".join(rows["utility"].sort_values().index)
        print(f"| {unit}{point:g} | " + " | ".join(cells) + f" | {ordering} |")


def convergence_table(name: str, by: list[str]) -> None:
    checks = pd.read_csv(HERE / f"{name}_convergence.csv")
    grouped = checks.groupby(by, sort=False).agg(
        runs=("flat", "size"),
        flat=("flat", "sum"),
        drift=("drift", "max"),
        spread=("spread", "max"),
    )
    print(f"\n{name}: convergence (eval curve over the last 20% of training)\n")
    print("| " + " | ".join(by) + " | flat runs | largest drift | largest spread |")
    print("|---" * (len(by) + 3) + "|")
    for index, row in grouped.iterrows():
        index = index if isinstance(index, tuple) else (index,)
        print(
            "| "
            + " | ".join(str(i) for i in index)
            + f" | {int(row['flat'])} of {int(row['runs'])}"
            + f" | {row['drift']:.2%} | {row['spread']:.2%} |"
        )


def main() -> None:
    for name, key, unit in (("fig7", "users", "U="), ("fig8", "capacity_gb", "C=")):
        if (HERE / f"{name}_summary.csv").is_file():
            sweep_table(name, key, unit)
            convergence_table(name, [key, "policy"])
    for name, by in (("fig6a", ["variant"]), ("fig6b", ["variant"])):
        if (HERE / f"{name}_convergence.csv").is_file():
            convergence_table(name, by)


if __name__ == "__main__":
    main()
