"""Summarise training runs (metrics.jsonl + config.json) into a JSON file and a Markdown table.

Usage: python summarize_runs.py RUNS.txt OUT.json RUNS_ROOT (RUNS.txt: one `folder|description` a line)."""

import json
import math
import sys
from pathlib import Path

COLUMNS = "run | data | steps x batch | K | lr | momentum | final loss / ln K (last 10) | min spread"
COLUMNS += " | teacher H / ln K | init weight left"


def spread(row: dict, cfg: dict) -> float:
    """The batch spread; runs from before that stat logged the same entropy in nats."""
    if "teacher_batch_spread" in row:
        return row["teacher_batch_spread"]
    return row.get("teacher_mean_entropy", 0.0) / math.log(min(2 * cfg["batch_size"], cfg["out_dim"]))


def summary(run: Path, description: str) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    k = math.log(cfg["out_dim"])
    tail = rows[-10:]
    drift = next((r["teacher_drift"] for r in reversed(rows) if "teacher_drift" in r), None)
    return {
        "run": run.name,
        "what": description,
        "steps": rows[-1]["step"],
        "batch": cfg["batch_size"],
        "out_dim": cfg["out_dim"],
        "lr": cfg["lr"],
        "momentum_teacher": round(cfg["momentum_teacher"], 4),
        "teacher_temp": cfg["teacher_temp"],
        "videos": [Path(v).name for v in cfg["video"]],
        "final_loss_over_lnK": round(sum(r["loss"] for r in tail) / len(tail) / k, 3),
        "min_loss_over_lnK": round(min(r["loss"] for r in rows) / k, 3),
        "final_teacher_entropy_frac": round(rows[-1]["teacher_entropy_frac"], 3),
        "min_batch_spread": round(min(spread(r, cfg) for r in rows), 2),
        "final_init_weight": round(rows[-1]["teacher_init_weight"], 4),
        "final_teacher_drift": drift,
        "curve": [[r["step"], round(r["loss"] / k, 3)] for r in rows[::10]],
    }


def main() -> None:
    lines = [line.split("|", 1) for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
    runs = [summary(Path(sys.argv[3]) / name.strip(), what.strip()) for name, what in lines]
    Path(sys.argv[2]).write_text(json.dumps(runs, indent=1) + "\n")
    print(f"| {COLUMNS} |")
    print("|" + "---|" * len(COLUMNS.split(" | ")))
    for r in runs:
        cells = [
            r["what"],
            ", ".join(r["videos"]),
            f"{r['steps']} x {r['batch']}",
            r["out_dim"],
            f"{r['lr']:g}",
            r["momentum_teacher"],
            r["final_loss_over_lnK"],
            r["min_batch_spread"],
            r["final_teacher_entropy_frac"],
            r["final_init_weight"],
        ]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
