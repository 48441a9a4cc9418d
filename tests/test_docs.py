"""The docs: generated pages match the parsers and the JSON, and the README's commands are real commands."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("docs_gen", ROOT / "docs" / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_lists_every_command_and_flag(gen):
    page = (ROOT / "docs" / "cli.md").read_text()
    sections = dict(re.findall(r"^## (edge-vsd[\w -]*)\n(.*?)(?=^## |\Z)", page, re.M | re.S))
    parsers = gen.command_parsers()
    assert len(parsers) > 10
    for name, parser in parsers.items():
        title = f"edge-vsd {name}".strip()
        assert title in sections, f"docs/cli.md has no section for `{title}`: run python docs/gen.py"
        for flag in gen.option_names(parser):
            assert f"`{flag}`" in sections[title], (
                f"docs/cli.md: `{title}` lacks {flag}: run python docs/gen.py"
            )


def test_generated_pages_are_current(gen):
    for path, text in gen.outputs().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run python docs/gen.py"


def test_readme_commands_are_real_commands_with_real_flags(gen):
    commands = list(gen.shell_commands((ROOT / "README.md").read_text()))
    names = {argv[1] for _, argv in commands if len(argv) > 1}
    assert {"quickstart", "train", "eval", "export", "bench", "extract"} <= names
    assert gen.bad_commands(ROOT / "README.md") == []


def test_docs_pages_commands_are_real_commands(gen):
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert sum(len(list(gen.shell_commands(p.read_text()))) for p in pages) > 10
    assert [msg for page in pages for msg in gen.bad_commands(page)] == []


def test_command_check_rejects_what_the_cli_rejects(gen):
    parsers = gen.command_parsers()
    ok = ["edge-vsd", "export", "run/checkpoint.pt", "--target", "jetson", "--int8", "--calib", "a.mp4"]
    assert gen.check_command(ok, parsers) is None
    assert "unrecognized arguments: --no-such-flag" in gen.check_command([*ok, "--no-such-flag"], parsers)
    assert "invalid int value" in gen.check_command(["edge-vsd", "train", "--steps", "many"], parsers)
    assert "unknown command" in gen.check_command(["edge-vsd", "trian", "--video", "x"], parsers)
    assert "required" in gen.check_command(["edge-vsd", "extract", "0", "--out", "f.npz"], parsers)


def test_shell_commands_follow_continuations_chains_and_prompts(gen):
    page = (
        "```bash\npip install . && edge-vsd tune art \\\n    --rounds 5  # a comment\n```\n"
        "```console\n$ edge-vsd lint-trt a.onnx\nedge-vsd lint-trt: printed output, not a command\n```\n"
        "```python\nedge-vsd = 1\n```\n"
    )
    assert [argv for _, argv in gen.shell_commands(page)] == [
        ["edge-vsd", "tune", "art", "--rounds", "5"],
        ["edge-vsd", "lint-trt", "a.onnx"],
    ]


def _docs_copy(tmp_path: Path) -> Path:
    """The repository's docs inputs and README in a temporary root, sources linked."""
    for name in ("edge_vsd", "export", "runtimes", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def test_a_changed_measurement_makes_the_pages_stale_until_regenerated(gen, tmp_path, monkeypatch, capsys):
    root = _docs_copy(tmp_path)
    monkeypatch.setattr(gen, "ROOT", root)
    monkeypatch.setattr(gen, "DOCS", root / "docs")
    monkeypatch.setattr(gen, "README", root / "README.md")
    assert gen.main(["--check"]) == 0
    newest = max(
        (root / "docs" / "peers").glob("vits16-*.json"), key=lambda p: json.loads(p.read_text())["created_at"]
    )
    data = json.loads(newest.read_text())
    data["rows"]["ours_tuned"]["median_ms"] = 123.456
    newest.write_text(json.dumps(data))

    assert gen.main(["--check"]) == 1
    assert "docs/benchmarks.md is stale" in capsys.readouterr().err
    assert gen.main([]) == 0
    assert "123.46 ms" in (root / "README.md").read_text()
    assert "| ours_tuned | openvino-cpu" in (root / "docs" / "benchmarks.md").read_text()
    assert gen.main(["--check"]) == 0


def test_check_names_a_readme_command_the_cli_rejects(gen, tmp_path, monkeypatch, capsys):
    root = _docs_copy(tmp_path)
    monkeypatch.setattr(gen, "ROOT", root)
    monkeypatch.setattr(gen, "DOCS", root / "docs")
    monkeypatch.setattr(gen, "README", root / "README.md")
    readme = root / "README.md"
    readme.write_text(readme.read_text() + "\n```bash\nedge-vsd bench art --iterations 5\n```\n")
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "README.md:" in err and "--iterations" in err


def test_readme_shows_the_marked_rows_and_the_headline_ablation_from_its_json(gen, tmp_path, monkeypatch):
    """The README keeps the rows docs/provenance.json marks (benchmarks.md keeps all) and renders the
    marked seeded ablation's arms from its JSON, so a changed arm changes the README."""
    root = _docs_copy(tmp_path)
    monkeypatch.setattr(gen, "ROOT", root)
    monkeypatch.setattr(gen, "DOCS", root / "docs")
    monkeypatch.setattr(gen, "README", root / "README.md")
    prov = json.loads((root / "docs" / "provenance.json").read_text())
    marked = [rel for rel, v in prov.items() if isinstance(v, dict) and v.get("readme")]
    rows = gen.quality_rows("docs/")
    assert any(shown for *_, shown in rows) and not all(shown for *_, shown in rows)
    readme_table = gen.status_table("docs/", headline_only=True)
    assert all((f"[json](docs/{rel})" in readme_table) == (rel in marked) for rel in gen._files("learning"))
    assert readme_table.count("\n| ") < gen.status_table("docs/").count("\n| ")

    rel = gen.headline_ablation()
    assert rel in marked
    path = root / "docs" / rel
    data = json.loads(path.read_text())
    arm = next(a for a in data["arms"] if a["method"] == "vsd")
    arm["JF"] = 0.987654
    path.write_text(json.dumps(data))
    assert gen.main([]) == 0
    readme = (root / "README.md").read_text()
    block = readme.split("docs/gen.py: ablation -->")[1]
    assert f"| VSD Δ {arm['delta']:g} | 0.988" in block and "random init (3 seeds)" in block
    assert "region probe" not in block  # a file from before the region probe gets no empty column
    arm["region"] = 0.456789
    path.write_text(json.dumps(data))
    assert gen.main([]) == 0
    block = (root / "README.md").read_text().split("docs/gen.py: ablation -->")[1]
    line = next(row for row in block.splitlines() if row.startswith(f"| VSD Δ {arm['delta']:g} |"))
    assert "| region probe bal. acc |" in block and line.split(" | ")[3] == "0.457"


def test_several_seeds_of_one_recipe_are_one_row_judged_against_the_wider_spread(gen, tmp_path, monkeypatch):
    """An eval file whose provenance names `seeds_of` gives one row: the checkpoints' mean ± std, judged
    against the wider of the trained and the random-init spreads, each seed's value in the cell."""
    root = _docs_copy(tmp_path)
    monkeypatch.setattr(gen, "DOCS", root / "docs")
    rel = "learning/probe-seeds-test.json"

    def row(name, kind, value):
        return {"name": name, "kind": kind, "correspondence": {"corr_acc": value}}

    floor = {
        "name": "random init (3 seeds)",
        "kind": "floor",
        "spread": {"corr_acc": {"mean": 0.30, "std": 0.005, "n": 3}},
    }
    models = [
        row("s0.pt", "checkpoint", 0.31),
        row("s1.pt", "checkpoint", 0.34),
        row("s2.pt", "checkpoint", 0.37),
        floor,
    ]
    (root / "docs" / rel).write_text(json.dumps({"created_at": "2026-12-03", "models": models}))
    prov = json.loads((root / "docs" / "provenance.json").read_text())
    prov[rel] = {"date": "2026-12-03", "machine": "m", "label": "probe", "seeds_of": "recipe R"}
    (root / "docs" / "provenance.json").write_text(json.dumps(prov))

    mine = [r for r in gen.quality_rows("docs/") if r[2][-1] == f"[json](docs/{rel})"]
    assert len(mine) == 1
    ok, diff, cells, _ = mine[0]
    assert cells[0] == "recipe R, probe" and cells[1] == "0.340 ± 0.030 (3 seeds: 0.310, 0.340, 0.370)"
    # +0.040 is 8 times the random inits' spread but 1.3 times the seeds' own: not beyond it
    assert ok is False and abs(diff - 0.04) < 1e-9 and "within the random inits' spread" in cells[2]

    for m, value in zip(models, (0.350, 0.345, 0.355)):  # the seeds agree: std 0.005
        m["correspondence"]["corr_acc"] = value
    (root / "docs" / rel).write_text(json.dumps({"created_at": "2026-12-03", "models": models}))
    ok, diff, cells, _ = next(r for r in gen.quality_rows("docs/") if r[2][-1] == f"[json](docs/{rel})")
    assert ok is True and "**above random init** (+0.050" in cells[2]


def test_an_ablation_without_a_vsd_arm_gets_its_dino_row(gen, tmp_path, monkeypatch):
    """An ablation of DINO alone (no Δ arm) is rendered as the DINO arm's row, not skipped or crashed on."""
    root = _docs_copy(tmp_path)
    monkeypatch.setattr(gen, "DOCS", root / "docs")
    part = next(
        rel for rel in gen._files("ablation") if not any(a["method"] == "vsd" for a in gen._load(rel)["arms"])
    )
    data = gen._load(part)
    src = "ablation/dino-alone-test.json"  # a copy that no merged ablation lists, so it gets its own rows
    (root / "docs" / src).write_text(json.dumps(data))
    if part in gen._merged_parts():  # the merged file gives the rows of its parts
        assert not [r for r in gen.quality_rows("docs/") if r[2][-1] == f"[json](docs/{part})"]
    dino = next(a for a in data["arms"] if a["method"] == "dino")
    rows = [r for r in gen.quality_rows("docs/") if r[2][-1] == f"[json](docs/{src})"]
    assert [r[2][0].split(",")[1] for r in rows] == [" DINO arm"] * len(rows) and rows
    assert rows[0][2][1].startswith(f"{dino['JF']:.3f}") and "DINO " not in rows[0][2][2]

    for a in data["arms"]:  # without a DINO arm either there is nothing trained to compare: no row
        a["method"] = "floor" if a["method"] == "dino" else a["method"]
    (root / "docs" / src).write_text(json.dumps(data))
    assert not [r for r in gen.quality_rows("docs/") if r[2][-1] == f"[json](docs/{src})"]


def test_a_seeded_ablation_lists_its_seeds_mean_final_loss(gen):
    """benchmarks.md's ablation rows give the seeds' mean ± std loss, not the first seed's alone."""
    rel = next(rel for rel in gen._files("ablation") if gen._load(rel)["settings"].get("seeds", 1) > 1)
    arm = next(a for a in gen._load(rel)["arms"] if a["method"] == "vsd")
    losses = [s["final"]["loss"] for s in arm["seeds"]]
    row = next(line for line in gen._ablation_section(rel) if line.startswith(f"| {arm['arm']} |"))
    assert row.endswith(f"| {np.mean(losses):.3f} ± {np.std(losses, ddof=1):.3f} |"), row


def test_ablate_and_the_docs_read_a_missing_seed_loss_alike(gen):
    """A seed with no recorded loss is left out of the mean by ablate's table and the docs' alike."""
    from edge_vsd.benchmarks.ablate import final_loss_text

    arm = {"seeds": [{"final": {"loss": 2.0}}, {"final": None}, {"final": {"loss": 4.0}}]}
    assert final_loss_text(arm) == f"3.000 ± {np.std([2.0, 4.0], ddof=1):.3f}"
    assert final_loss_text({"seeds": [{"final": {"loss": 2.5}}, {}]}) == "2.500"
    assert final_loss_text({"seeds": [{}, {}]}) == final_loss_text({}) == "-"
    rel = next(rel for rel in gen._files("ablation") if gen._load(rel)["settings"].get("seeds", 1) > 1)
    a = next(a for a in gen._load(rel)["arms"] if a["method"] == "vsd")
    row = next(line for line in gen._ablation_section(rel) if line.startswith(f"| {a['arm']} |"))
    assert row.endswith(f"| {final_loss_text(a)} |")
