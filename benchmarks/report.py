"""report.md (one table), report.html (self-contained: table, fingerprint, inline PNG plots) and the PNGs."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from edge_vsd.benchmarks import plots
from edge_vsd.benchmarks.verdicts import ship_line
from edge_vsd.runtimes.atomic import unwritable_at, write_bytes_atomic
from edge_vsd.runtimes.errors import RuntimeInputError

COLUMNS = [
    "artifact",
    "backend",
    "precision",
    "size MB",
    "p50 ms",
    "p90",
    "p99",
    "FPS",
    "CLS cos",
    "patch cos",
    "corr. acc",
    "status",
]


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row of strings per artifact, in COLUMNS order."""
    out = []
    for a in results["artifacts"]:
        lat, acc = a.get("latency") or {}, a.get("accuracy") or {}
        status = a["status"] + (f" ({a['reason']})" if a.get("reason") else "")
        status += "".join(f"; {n}" for n in a.get("notes") or [])
        out.append(
            [
                a["name"],
                a.get("backend") or "-",
                a.get("precision") or "-",
                _num(a.get("size_mb"), ".2f"),
                _num(lat.get("p50_ms"), ".2f"),
                _num(lat.get("p90_ms"), ".2f"),
                _num(lat.get("p99_ms"), ".2f"),
                _num(lat.get("fps"), ".1f"),
                _num(acc.get("cls_cosine"), ".4f"),
                _num(acc.get("patch_cosine"), ".4f"),
                _num(acc.get("corr_acc"), ".3f"),
                status,
            ]
        )
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """The Markdown comparison table (also printed to stdout)."""
    rows = table_rows(results)
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines) + "\n"


def _fingerprint_line(fp: dict[str, Any]) -> str:
    cpu, v = fp.get("cpu", {}), fp.get("versions", {})
    parts = [
        f"CPU {cpu.get('model')} ({cpu.get('int8_path')}, {cpu.get('threads_used')} threads)",
        f"{fp.get('os', {}).get('system')} {fp.get('os', {}).get('release')}",
    ]
    parts += [f"{k} {val}" for k, val in v.items() if val]
    j = fp.get("jetson")
    if j:
        parts.insert(
            0,
            f"{j.get('board')} L4T {(j.get('release') or {}).get('l4t')} "
            f"power mode {(j.get('power_mode') or {}).get('name')} jetson_clocks {j.get('jetson_clocks')}",
        )
    return "; ".join(parts)


def markdown_report(results: dict[str, Any]) -> str:
    """report.md: the table, the settings line and the machine fingerprint."""
    s = results["settings"]
    source = f", {s['data']['source']}" if s["data"].get("source") else ""
    ref = results.get("reference") or {}
    extra = []
    if any((a.get("seg") or {}).get("miou") is not None for a in results["artifacts"]):
        extra = [
            "",
            "Segmentation probe (linear head, held-out mIoU): "
            + ", ".join(
                f"{a['name']} {a['seg']['miou']:.3f}"
                for a in results["artifacts"]
                if (a.get("seg") or {}).get("miou") is not None
            ),
        ]
    for a in results["artifacts"]:
        gpu = a.get("gpu") or {}
        if gpu.get("compute"):
            extra.append(
                f"TensorRT {a['name']} (CUDA events): GPU compute p50 {gpu['compute']['p50_ms']:.3f} ms, "
                f"with host-device copies p50 {gpu['with_copies']['p50_ms']:.3f} ms."
            )
    return "\n".join(
        [
            "# edge-vsd benchmark",
            "",
            markdown_table(results),
            ship_line(results),
            "",
            f"Batch {s['batch']}, {s['iters']} timed calls in {s.get('rounds', 1)} rounds (each artifact "
            f"in its own block after {s['warmup']} warm-up, order rotated, median of rounds); "
            f"data: {s['data'].get('kind')} ({s['data'].get('frames')} frames{source}); "
            f"reference: {ref.get('name') or 'none'}; gate: CLS cos >= {s['gate']['min_cls_cosine']}, "
            f"patch cos >= {s['gate']['min_patch_cosine']}.",
            *extra,
            "",
            f"Machine: {_fingerprint_line(results['fingerprint'])}",
            "",
        ]
    )


DETAIL_COLUMNS = [
    "artifact",
    "load s",
    "mean ms",
    "std",
    "min",
    "max",
    "peak RSS MB",
    "kNN agr.",
    "corr. chance",
    "seg mIoU",
    "GPU compute p50",
    "GPU +copies p50",
]


def detail_rows(results: dict[str, Any]) -> list[list[str]]:
    """Everything else measured per artifact, for the HTML report's second table."""
    out = []
    for a in results["artifacts"]:
        lat, acc = a.get("latency") or {}, a.get("accuracy") or {}
        gpu = a.get("gpu") or {}
        out.append(
            [
                a["name"],
                _num(a.get("load_s"), ".3f"),
                _num(lat.get("mean_ms"), ".3f"),
                _num(lat.get("std_ms"), ".3f"),
                _num(lat.get("min_ms"), ".3f"),
                _num(lat.get("max_ms"), ".3f"),
                _num((a.get("memory") or {}).get("peak_rss_mb"), ".0f"),
                _num(acc.get("knn_agreement"), ".3f"),
                _num((a.get("correspondence") or {}).get("chance"), ".3f"),
                _num((a.get("seg") or {}).get("miou"), ".3f"),
                _num((gpu.get("compute") or {}).get("p50_ms"), ".3f"),
                _num((gpu.get("with_copies") or {}).get("p50_ms"), ".3f"),
            ]
        )
    return out


def _html_table(columns: list[str], rows: list[list[str]], status_last: bool) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in (row[:-1] if status_last else row))
        if status_last:
            cells += f'<td class="{html.escape(row[-1].split(" ")[0])}">{html.escape(row[-1])}</td>'
        body.append(f"<tr>{cells}</tr>")
    kind = "main" if status_last else "details"
    return f'<table class="{kind}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def html_report(results: dict[str, Any], images: dict[str, bytes]) -> str:
    """A single HTML file: table, settings, fingerprint and the plots as base64 PNGs (no external files)."""
    main_table = _html_table(COLUMNS, table_rows(results), status_last=True)
    details = _html_table(DETAIL_COLUMNS, detail_rows(results), status_last=False)
    figs = "".join(
        f'<figure><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in images.items()
    )
    md = markdown_report(results).split("\n")
    notes = "".join(
        f"<p>{html.escape(line)}</p>" for line in md[md.index("") + 1 :] if line and not line.startswith("|")
    )
    fingerprint = html.escape(json.dumps(results["fingerprint"], indent=2))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edge-vsd benchmark</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1b2631; background: #fff; }}
table {{ border-collapse: collapse; font-size: 14px; }}
th, td {{ border: 1px solid #aab7b8; padding: 4px 8px; text-align: right; }}
th {{ background: #d6eaf8; }} td {{ white-space: nowrap; }}
th:first-child, td:first-child, table.main th:last-child, table.main td:last-child {{
  text-align: left; white-space: normal; }}
td.ok {{ background: #d5f5e3; }} td.fails-gate {{ background: #fdebd0; }} td.failed {{ background: #fadbd8; }}
h2 {{ font-size: 18px; margin-top: 24px; }}
figure {{ display: inline-block; margin: 12px; }} img {{ max-width: 560px; border: 1px solid #d5d8dc; }}
pre {{ background: #f4f6f6; padding: 8px; font-size: 12px; }}
</style></head><body>
<h1>edge-vsd benchmark</h1>
<p>Created {html.escape(results.get("created_at", ""))}</p>
{main_table}
{notes}
{figs}
<h2>Details</h2>
{details}
<details><summary>System fingerprint</summary><pre>{fingerprint}</pre></details>
</body></html>
"""


REPORT_FILES = ("results.json", "report.md", "report.html")


def check_writable(out_dir: str | Path, flag: str = "--report") -> None:
    """Before any work: `out_dir` is, or can be created as, a folder we can write files into (found by
    creating and removing a probe file in the nearest existing folder)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RuntimeInputError(f"{out}: exists and is not a folder ({flag})")
    blocker = unwritable_at(out)
    if blocker is not None:
        raise RuntimeInputError(f"{out}: cannot write here ({flag}): no new file can be made in {blocker}")


def check_report_dir(out_dir: str | Path, force: bool) -> None:
    """Before any work: the report folder can be written, and holds no report unless `force` replaces it."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RuntimeInputError(f"{out}: exists and is not a folder (--report)")
    taken = [n for n in REPORT_FILES if (out / n).exists()]
    if taken and not force:
        raise RuntimeInputError(f"{out}: already holds a report ({taken[0]}); pass --force to replace it")
    check_writable(out, "--report")


def write_report(results: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, report.md, report.html and the PNG plots into out_dir; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {
        name: png
        for name, png in (
            ("latency.png", plots.latency_plot(results["artifacts"])),
            ("accuracy_vs_latency.png", plots.accuracy_latency_plot(results["artifacts"])),
        )
        if png is not None
    }
    files = {
        "results.json": (json.dumps(results, indent=2, allow_nan=False) + "\n").encode(),
        "report.md": markdown_report(results).encode(),
        "report.html": html_report(results, images).encode(),
        **images,
    }
    written = {}
    for name, data in files.items():
        write_bytes_atomic(out / name, data)
        written[name] = out / name
    return written
