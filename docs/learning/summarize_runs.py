"""Summarise training runs (metrics.jsonl + config.json) into a JSON file and a Markdown table.

Usage: python summarize_runs.py RUNS.txt OUT.json RUNS_ROOT (RUNS.txt: one `folder|description` a line)."""
import json, math, sys
from pathlib import Path

rows = []
for name, desc in [l.split("|", 1) for l in Path(sys.argv[1]).read_text().splitlines() if l.strip()]:
    run = Path(sys.argv[3]) / name.strip()
    cfg = json.loads((run / "config.json").read_text())
    m = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    k = math.log(cfg["out_dim"])
    last = m[-1]
    tail = m[-10:]
    rows.append({
        "run": name.strip(), "what": desc.strip(), "steps": last["step"], "batch": cfg["batch_size"],
        "out_dim": cfg["out_dim"], "lr": cfg["lr"], "momentum_teacher": round(cfg["momentum_teacher"], 4),
        "teacher_temp": cfg["teacher_temp"], "videos": [Path(v).name for v in cfg["video"]],
        "final_loss_over_lnK": round(sum(r["loss"] for r in tail) / len(tail) / k, 3),
        "min_loss_over_lnK": round(min(r["loss"] for r in m) / k, 3),
        "final_teacher_entropy_frac": round(last["teacher_entropy_frac"], 3),
        # runs before the spread stat logged the mean distribution's entropy in nats: same measure, rescaled
        "min_batch_spread": round(min(r.get("teacher_batch_spread", r.get("teacher_mean_entropy", 0) / math.log(min(2 * cfg["batch_size"], cfg["out_dim"]))) for r in m), 2),
        "final_init_weight": round(last["teacher_init_weight"], 4),
        "final_teacher_drift": next((r["teacher_drift"] for r in reversed(m) if "teacher_drift" in r), None),
        "curve": [[r["step"], round(r["loss"] / k, 3)] for r in m[::10]],
    })
Path(sys.argv[2]).write_text(json.dumps(rows, indent=1) + "\n")
print("| run | data | steps x batch | K | lr | momentum | final loss / ln K (last 10) | min spread | teacher H / ln K | init weight left |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['what']} | {', '.join(r['videos'])} | {r['steps']} x {r['batch']} | {r['out_dim']} | {r['lr']:g} | {r['momentum_teacher']} | {r['final_loss_over_lnK']} | {r['min_batch_spread']} | {r['final_teacher_entropy_frac']} | {r['final_init_weight']} |")
