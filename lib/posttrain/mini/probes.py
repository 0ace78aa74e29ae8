"""The miniature's fill-in probes: Base's greedy recall of each world fact (the storage gate, docs/miniature.md §8).
Paper-scale studies have no clozes."""
from __future__ import annotations

import json
from pathlib import Path

from posttrain.evaluation import plan_evaluations
from posttrain.params import StudyParams
from posttrain.records import read_jsonl

FILL_IN_FILE = "fill_in.jsonl"  # the miniature's clozes, one per world fact (posttrain.mini.world.fill_in_probe)
FILL_IN_RESULT = "fill_in.json"  # under eval/


def fill_in_accuracy(model_path: str, tokenizer_path: str, rows: list[dict], work_dir: str | Path) -> dict:
    """Greedy continuation of each cloze ("The number of wells in Baikux is" -> " 7"), through the HF engine of
    posttrain.generation: the share answered exactly (the number, not followed by another digit), over all facts
    and over seen / held-out towns."""
    from posttrain.generation import GenerationRequest, run_request

    out = Path(work_dir) / "fill_in.gen.jsonl"
    out.unlink(missing_ok=True)
    req = GenerationRequest(model=model_path, tokenizer=tokenizer_path, output=str(out), n=1, temperature=0.0,
                            top_p=1.0, max_tokens=4, prompts=[{"key": i, "prompt": r["prompt"]}
                                                              for i, r in enumerate(rows)], dtype="float32")
    run_request(req, "hf")
    text = {g["key"]: g["responses"][0] for g in read_jsonl(out)}
    out.unlink()
    hits = [text[i].startswith(r["answer"]) and not text[i][len(r["answer"]):][:1].isdigit()
            for i, r in enumerate(rows)]

    def share(keep):
        picked = [h for h, r in zip(hits, rows) if keep(r)]
        return round(sum(picked) / len(picked), 4) if picked else None
    return {"facts": len(rows), "all": share(lambda r: True), "seen": share(lambda r: not r["held_out"]),
            "held_out": share(lambda r: r["held_out"])}


def storage_check(study: StudyParams) -> dict | None:
    """The miniature's storage gate (docs/miniature.md §8): Base's fill-in accuracy on every fact, written to
    eval/fill_in.json for the report. None for a study without the clozes (paper scale) or without a Base model."""
    data_dir = study.evaluate.data_dir
    base = [j for j in plan_evaluations(study) if j.arm == "Base"]
    if not data_dir or not (Path(data_dir) / FILL_IN_FILE).is_file() or not base:
        return None
    job = base[0]
    out = Path(study.run_dir) / "eval" / FILL_IN_RESULT
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"model": job.model, "checkpoint": job.checkpoint,
              **fill_in_accuracy(job.path, job.tokenizer, read_jsonl(Path(data_dir) / FILL_IN_FILE), out.parent)}
    out.write_text(json.dumps(result, indent=1))
    return result


