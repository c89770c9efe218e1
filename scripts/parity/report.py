"""Stage-by-stage comparison of the two sides' recordings, written as a markdown report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PACKAGES = {"nora-tf450": ["transformers", "torch", "qwen-vl-utils", "accelerate", "pillow", "numpy"],
            "nora15-tf4541": ["transformers", "torch", "qwen-vl-utils", "accelerate", "pillow", "numpy",
                              "tensorflow", "tensorflow-datasets", "dlimp"]}
ACTION_TOLERANCE = 1e-4
EXACT = ("input_ids", "attention_mask", "image_grid_thw", "image", "positions")


def load(work: Path, side: str, model: str) -> tuple[dict, dict]:
    with np.load(work / f"{side}_{model}.npz") as arrays:
        data = {k: arrays[k] for k in arrays.files}
    return data, json.loads((work / f"{side}_{model}.json").read_text())


def stage(data: dict, case: str, name: str) -> np.ndarray:
    return data[f"{case}/{name}"]


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def kv_diff(official: dict, ours: dict, case: str) -> float:
    names = [k.split("/", 1)[1] for k in official if k.startswith(f"{case}/keys") or k.startswith(f"{case}/values")]
    return max(max_diff(stage(official, case, n), stage(ours, case, n)) for n in names)


def compare_inputs(official: dict, ours: dict, case: str) -> dict:
    """Exact stages (=: identical), pixel values as max |difference|."""
    row = {}
    for name in EXACT:
        a, b = stage(official, case, name), stage(ours, case, name)
        row[name] = a.shape == b.shape and np.array_equal(a, b)
    row["pixel_values"] = max_diff(stage(official, case, "pixel_values"), stage(ours, case, "pixel_values"))
    row["features"] = max_diff(stage(official, case, "image_features"), stage(ours, case, "image_features"))
    row["kv"] = kv_diff(official, ours, case)
    return row


def nora_rows(work: Path, model: str) -> tuple[list[dict], dict]:
    official, official_notes = load(work, "official", model)
    ours, our_notes = load(work, "evalkit", model)
    rows = []
    for case in [k for k in our_notes if k not in ("versions", "generation_note")]:
        row = compare_inputs(official, ours, case)
        row.update(case=case, frame="x".join(map(str, _frame(work, case).shape[:2])),
                   rope_deltas=np.array_equal(stage(official, case, "rope_deltas").reshape(-1),
                                              stage(ours, case, "rope_deltas").reshape(-1)),
                   tokens=official_notes[case]["new_tokens"] == our_notes[case]["new_tokens"],
                   n_tokens=len(our_notes[case]["new_tokens"]),
                   fast_ids=official_notes[case]["fast_ids"] == our_notes[case]["fast_ids"],
                   decoded_as=our_notes[case]["decoded_as"])
        rows.append(row)
    return rows, {"official": official_notes["versions"], "evalkit": our_notes["versions"],
                  "generation_note": our_notes.get("generation_note")}


def nora15_rows(work: Path) -> tuple[list[dict], dict]:
    official, official_notes = load(work, "official", "nora-1.5")
    ours, our_notes = load(work, "evalkit", "nora-1.5")
    rows = []
    for case in [k for k in our_notes if k != "versions"]:
        row = compare_inputs(official, ours, case)
        same_steps = official_notes[case]["times"] == our_notes[case]["times"]
        row.update(case=case, frame="x".join(map(str, _frame(work, case).shape[:2])), times=same_steps,
                   n_steps=len(our_notes[case]["times"]),
                   states=max_diff(stage(official, case, "states"), stage(ours, case, "states")),
                   velocities=max_diff(stage(official, case, "velocities"), stage(ours, case, "velocities")),
                   normalised=max_diff(stage(official, case, "normalised"), stage(ours, case, "normalised")),
                   actions=max_diff(stage(official, case, "actions"), stage(ours, case, "actions")))
        rows.append(row)
    return rows, {"official": official_notes["versions"], "evalkit": our_notes["versions"],
                  "load": official_notes["load"], "times": our_notes[rows[0]["case"]]["times"]}


def _frame(work: Path, case: str) -> np.ndarray:
    image = {c["name"]: c["image"] for c in json.loads((work / "cases.json").read_text())}[case]
    with np.load(work / "images.npz") as images:
        return images[image]


def mark(value) -> str:
    if isinstance(value, bool):
        return "=" if value else "**differs**"
    if value == 0:
        return "0"
    return f"{value:.1e}"


def nora_table(rows: list[dict]) -> list[str]:
    lines = ["| case | frame | prompt ids | mask | 224 image | pixel values max abs diff | grid | "
             "image features max abs diff | positions | rope delta | prefill K/V max abs diff | greedy tokens | "
             "FAST ids | evalkit decodes |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['frame']} | {mark(r['input_ids'])} | {mark(r['attention_mask'])} | "
                     f"{mark(r['image'])} | {mark(r['pixel_values'])} | {mark(r['image_grid_thw'])} | "
                     f"{mark(r['features'])} | "
                     f"{mark(r['positions'])} | {mark(r['rope_deltas'])} | {mark(r['kv'])} | "
                     f"{mark(r['tokens'])} ({r['n_tokens']}) | {mark(r['fast_ids'])} | {r['decoded_as']} |")
    return lines


def nora15_table(rows: list[dict]) -> list[str]:
    lines = ["| case | frame | prompt ids | 224 image | pixel values max abs diff | image features max abs diff | "
             "positions | backbone K/V max abs diff | flow times | states max abs diff | velocities max abs diff | "
             "normalised chunk max abs diff | actions max abs diff |", "|---" * 13 + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['frame']} | {mark(r['input_ids'])} | {mark(r['image'])} | "
                     f"{mark(r['pixel_values'])} | {mark(r['features'])} | {mark(r['positions'])} | {mark(r['kv'])} | "
                     f"{mark(r['times'])} ({r['n_steps']}) | {mark(r['states'])} | {mark(r['velocities'])} | "
                     f"{mark(r['normalised'])} | {mark(r['actions'])} |")
    return lines


def nora_accepted(rows: list[dict]) -> bool:
    return all(r["input_ids"] and r["positions"] and r["pixel_values"] == 0 and r["tokens"] for r in rows)


def build(work: Path, models: list[str], command: str, sources: dict, versions: dict) -> str:
    header = ["# Official-code parity: NORA, NORA-LONG, NORA-1.5 (tiny checkpoints)", "",
              "Generated by `scripts/parity/run_parity.py`; the text after the tables is in "
              "`scripts/parity/report_notes.md`. Reproduce:", "", "```",
              *FETCH_COMMANDS, command, "```", "",
              "Official sources: " + ", ".join(f"{k} `{v}`" for k, v in sources.items()) + ".", "",
              "Side environments: " + "; ".join(f"`{name}`: " + ", ".join(f"{k} {v}" for k, v in pkgs.items())
                                                for name, pkgs in versions.items()) + ".", ""]
    lines, verdicts = [], []
    for model in [m for m in models if m != "nora-1.5"]:
        rows, meta = nora_rows(work, model)
        ok = nora_accepted(rows)
        verdicts.append(f"- {model}: {'PASS' if ok else 'FAIL'}: identical prompt ids, positions, pixel values "
                        f"and greedy tokens on {sum(nora_accepted([r]) for r in rows)}/{len(rows)} cases")
        lines += [f"## {model}", "", f"evalkit: {meta['generation_note']}. evalkit side: "
                  + ", ".join(f"{k} {v}" for k, v in meta["evalkit"].items()) + ".", "", *nora_table(rows), ""]
    if "nora-1.5" in models:
        rows, meta = nora15_rows(work)
        worst = max(r["actions"] for r in rows)
        verdicts.append(f"- nora-1.5: {'PASS' if worst <= ACTION_TOLERANCE else 'FAIL'}: actions within "
                        f"{worst:.1e} of the official code (tolerance {ACTION_TOLERANCE:g}; float32, same noise) "
                        f"on {len(rows)} cases")
        load_line = ("every stored tensor loaded by the official `load_state_dict(strict=False)`"
                     if not any(meta["load"].values()) else f"official load: {meta['load']}")
        lines += ["## nora-1.5", "", f"{load_line}; flow times: {', '.join(f'{t:g}' for t in meta['times'])}.", "",
                  *nora15_table(rows), ""]
    notes = (Path(__file__).parent / "report_notes.md").read_text()
    return "\n".join(header + ["## Verdict", "", *verdicts, ""] + lines) + "\n" + notes


FETCH_COMMANDS = [
    "# the official trees (any way you fetch them; the harness never downloads code):",
    "git clone https://github.com/declare-lab/nora OFFICIAL_SRC/nora",
    "git clone https://github.com/declare-lab/nora-1.5 OFFICIAL_SRC/nora-1.5",
    "git clone https://github.com/moojink/dlimp_openvla OFFICIAL_SRC/dlimp_openvla",
]
