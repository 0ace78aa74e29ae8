"""scripts/compare_runs.py finds each kind of difference between two run directories, and none between copies."""
import importlib.util
import json
import shutil
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"
spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)

HEADER = "model,arm,size,train_domain,step,benchmark,domain,n,num_problems,num_ungradable,pass@1,pass@1_lo," \
         "pass@1_hi,pass@5,pass@5_lo,pass@5_hi,truncation_rate,path\n"


def make_run(root: Path) -> Path:
    (root / "sft" / "math_0pre").mkdir(parents=True)
    (root / "sft" / "math_0pre" / "loss.jsonl").write_text('{"step": 1, "loss": 2.5}\n')
    rec = root / "eval" / "math_0pre" / "checkpoint-10" / "mini_math.jsonl"
    rec.parent.mkdir(parents=True)
    rec.write_text(json.dumps({"problem_id": "p1", "responses": ["\\boxed{3}", "4"]}) + "\n")
    (root / "eval" / "results.csv").write_text(
        HEADER + "math_0pre,0%-Pre,mini,math,10,mini_math,math,2,1,0,0.5,0.0,1.0,1.0,1.0,1.0,0.0,/a/b\n")
    return root


def test_identical_copies_match(tmp_path):
    a = make_run(tmp_path / "a")
    shutil.copytree(a, tmp_path / "b")
    assert compare_runs.compare_runs(a, tmp_path / "b") == []
    assert compare_runs.main([str(a), str(tmp_path / "b")]) == 0


def test_each_kind_of_difference_is_reported(tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    (b / "sft" / "math_0pre" / "loss.jsonl").write_text('{"step": 1, "loss": 2.6}\n')
    rec = b / "eval" / "math_0pre" / "checkpoint-10" / "mini_math.jsonl"
    rec.write_text(json.dumps({"problem_id": "p1", "responses": ["\\boxed{3}", "5"]}) + "\n")
    csv = b / "eval" / "results.csv"
    csv.write_text(csv.read_text().replace(",0.5,", ",0.6,").replace("/a/b", "/elsewhere"))
    diffs = compare_runs.compare_runs(a, b)
    assert any("loss logs differ" in d for d in diffs)
    assert any("sampled responses differ" in d for d in diffs)
    assert any("pass@1: 0.5 vs 0.6" in d for d in diffs)
    assert not any("path" in d for d in diffs), "machine paths are not compared"
    assert compare_runs.main([str(a), str(b)]) == 1
