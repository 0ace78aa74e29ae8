"""Reading params files: `base:` layering, `{run_dir}`/`{repo}` substitution, repo-relative paths, hashes that
do not depend on where a run directory or the repository lies (posttrain.params)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


from posttrain.params.schema import REPO_ROOT, ParamsError, RunParams, StudyParams


def resolve_repo_path(path: str | Path) -> Path:
    """An absolute path for a params path or run_dir given relative: against the working directory where it exists
    there, else against the repository root. A JupyterLab kernel runs in notebooks/, so the notebooks' default
    `params/mini.yaml` (and a relative run_dir such as `runs/mini`) must still mean the repository's."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return path.resolve() if path.exists() else REPO_ROOT / path


def repo_relative(path: Any) -> Any:
    """An absolute path inside the repository made relative to its root, as a string (as outputs show paths: a
    shared report should not carry a machine's layout); anything else (a relative path, a hub id, a path elsewhere,
    a number) unchanged, so a whole table can go through it: `frame.map(repo_relative)`."""
    if not isinstance(path, (str, Path)) or not Path(path).is_absolute():
        return path
    try:
        return str(Path(path).relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _map_strings(obj: Any, fn) -> Any:
    """`obj` with `fn` applied to every string in it (through mappings and lists)."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_strings(v, fn) for v in obj]
    return obj


def _substitute(obj: Any, mapping: dict[str, str]) -> Any:
    def one(s: str) -> str:
        for key, value in mapping.items():
            s = s.replace("{" + key + "}", value)
        return s
    return _map_strings(obj, one)


def portable(obj: Any, run_dir: str | Path | None = None) -> Any:
    """`obj` (a path string, or params as mappings and lists) with the substitution undone: a string starting with
    the run dir or the repository root starts with `{run_dir}` / `{repo}` again. What stays the same when a run dir
    is moved, copied or renamed, or the repository cloned elsewhere; `_substitute` brings the paths back."""
    anchors = [(str(Path(run_dir)), "{run_dir}")] if run_dir and len(Path(run_dir).parts) > 1 else []
    anchors.append((str(REPO_ROOT), "{repo}"))  # after run_dir: a run dir usually lies inside the repository

    def one(s: str) -> str:
        for prefix, placeholder in anchors:
            if s == prefix or s.startswith(prefix + "/"):
                return placeholder + s[len(prefix):]
        return s
    return _map_strings(obj, one)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid field(s)"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (misspelt? see posttrain/params.py for the schema)"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    # Top-level keys starting with "x-" hold YAML anchors for reuse (&name / *name); they are not params.
    return {k: v for k, v in data.items() if not str(k).startswith("x-")}


RUN_LISTS = ("pretrain", "sft")  # study keys holding runs: inline mappings or paths of RunParams files


def _inline_run_files(data: dict, path: Path) -> None:
    """Replace each run given as a path (relative to `path`'s folder) by that file's mapping, in place."""
    for stage in RUN_LISTS:
        items = data.get(stage)
        if items is None:
            continue
        if not isinstance(items, list):
            raise ParamsError(f"{path}: {stage}: expected a list of runs")
        for i, item in enumerate(items):
            if isinstance(item, str):
                sub = (path.parent / item) if not Path(item).is_absolute() else Path(item)
                try:
                    items[i] = _read_yaml(sub)
                except ParamsError as e:
                    raise ParamsError(f"{path}: {stage}.{i}: {e}") from None


def _merge_runs(base: list, over: list, where: str) -> list:
    """Runs of an override file change the base's runs of the same `name`; the base's order is kept."""
    merged = list(base)
    names = [r.get("name") if isinstance(r, dict) else None for r in base]
    for i, run in enumerate(over):
        if not isinstance(run, dict) or not isinstance(run.get("name"), str):
            raise ParamsError(f"{where}.{i}: an override run needs the `name` of the base run it changes")
        if run["name"] not in names:
            raise ParamsError(f"{where}.{i}: no run named {run['name']!r} in the base file (runs there: "
                              f"{[n for n in names if n]}); an override file changes runs, it does not add them")
        j = names.index(run["name"])
        merged[j] = merge_overrides(base[j], run, f"{where}.{j}")
    return merged


def merge_overrides(base: dict, over: dict, where: str = "") -> dict:
    """`base` with `over` applied: mappings merge key by key (recursively), run lists (`pretrain`, `sft`) merge run
    by run on `name`, anything else in `over` replaces the base's value. Builds new mappings: YAML anchors make
    several runs share one mapping, which an in-place edit of one run would change for all of them."""
    merged = dict(base)
    for key, value in over.items():
        here = f"{where}.{key}" if where else str(key)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = merge_overrides(base[key], value, here)
        elif key in RUN_LISTS and not where and isinstance(value, list) and isinstance(base.get(key), list):
            merged[key] = _merge_runs(base[key], value, here)
        else:
            merged[key] = value
    return merged


def _read_layered(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A params file's mapping; with a top-level `base: other.yaml` (relative to this file), that file's mapping
    (itself possibly layered) with this file's keys merged over it (`merge_overrides`)."""
    data = _read_yaml(path)
    _inline_run_files(data, path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ParamsError(f"{path}: base: expected the path of a params YAML relative to this file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in seen + (path.resolve(),):
        raise ParamsError(f"{path}: base: {base} leads back to a file already in the chain (a cycle)")
    try:
        base_data = _read_layered(base_path, seen + (path.resolve(),))
        return merge_overrides(base_data, data)
    except ParamsError as e:
        raise ParamsError(f"{path}: base {base}: {e}") from None


def load_run_params(path: str | Path, run_dir: str | None = None) -> RunParams:
    """Load and validate one training run's YAML."""
    path = resolve_repo_path(path)
    data = _substitute(_read_layered(path), {"repo": str(REPO_ROOT), **({"run_dir": run_dir} if run_dir else {})})
    try:
        return RunParams.model_validate(data)
    except ValidationError as e:
        raise ParamsError(_format_errors(e, str(path))) from None


def load_study(path: str | Path, run_dir: str | None = None) -> StudyParams:
    """Load and validate a study YAML; `pretrain`/`sft` items may be paths of RunParams files (relative to it)."""
    path = resolve_repo_path(path)
    run_dir = str(resolve_repo_path(run_dir)) if run_dir else None
    data = _read_layered(path)
    name = data.get("name")
    if not isinstance(name, str):
        raise ParamsError(f"{path}: name: required, a string")
    resolved_run_dir = run_dir or _substitute(data.get("run_dir", "{repo}/runs/{name}"),
                                              {"repo": str(REPO_ROOT), "name": name})
    mapping = {"repo": str(REPO_ROOT), "name": name, "run_dir": str(resolved_run_dir)}
    data = _substitute(data, mapping)
    data["run_dir"] = str(resolved_run_dir)
    try:
        study = StudyParams.model_validate(data)
    except ValidationError as e:
        raise ParamsError(_format_errors(e, str(path))) from None
    # Defaults may hold placeholders too (report.figures_dir): substitute over the validated whole once more.
    return StudyParams.model_validate(_substitute(study.model_dump(), mapping))


def params_hash(obj: BaseModel | dict, run_dir: str | Path | None = None) -> str:
    """Short stable hash of params: stages skip work whose outputs carry the same hash. Paths enter it `portable`
    (as `{run_dir}/...`, `{repo}/...`), so a moved, copied or renamed run dir, or a clone of the repository, still
    skips its finished work. `run_dir` defaults to the params' own: a study's run_dir; for a run, the folder above
    its stage folder (output_dir = <run_dir>/<stage>/<name>, as every study lays its runs out)."""
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return _digest(portable(data, run_dir or _own_run_dir(obj)))


def legacy_params_hash(obj: BaseModel | dict) -> str:
    """The hash as it was before run dirs could move (absolute paths in it): done markers written then still match
    where their run dir lies."""
    return _digest(obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _own_run_dir(obj: Any) -> str | Path | None:
    if isinstance(obj, StudyParams):
        return obj.run_dir
    if isinstance(obj, RunParams) and len(Path(obj.output_dir).parts) > 3:
        return Path(obj.output_dir).parents[1]
    return None


def dump_params(obj: BaseModel, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(obj.model_dump(mode="json"), sort_keys=False))
