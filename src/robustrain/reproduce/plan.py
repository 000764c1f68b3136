"""Plan a paper table's reproduction: every run resolved and validated, nothing written.

``robustrain reproduce TABLE`` = :func:`build_plan` + :func:`~robustrain.reproduce.execute.run_plan`:

1. **Plan** (this module; nothing is written): every selected row x seed becomes a
   :class:`RunSpec`: the row's YAML file, the scale's overrides (:mod:`robustrain.reproduce.scale`),
   the harness's own (``seed``, ``out_dir``/``name`` = ``OUT/<table>/<row>/seed<k>``,
   ``eval.final_attacks=natural`` since the harness evaluates itself), what the row needs (HAT's
   helper checkpoint, Table 4's generated data) and the user's ``--set`` overrides last, validated
   as one config. Identical resolved configs are trained once: a run shares the folder of an
   identical run planned before it, or of an identical run already on disk under ``OUT`` (so
   Table 6 row 5 reuses Table 1's UIAT run, and mini CIFAR-100 rows reuse the CIFAR-10 ones). A
   run folder that holds a run of another config is an error, never silently reused.
2. **Check** before anything runs (:func:`~robustrain.reproduce.execute.check_ready`): a GPU for
   full-scale training, the dataset files, the generated-data files.
3. **Run** row by row (:mod:`~robustrain.reproduce.execute`): the helper first (HAT), then
   training, a finished run (``summary.json``) is skipped, an interrupted one resumed from
   ``last.pt``; then the evaluation of the table's columns on ``best.pt``
   (:mod:`~robustrain.reproduce.results`), cached per attack in ``reproduce-eval.json`` of the
   run folder, so an interrupted evaluation continues with the next attack (AutoAttack also
   resumes by chunk). Every column is measured on the same test images (the first ``eval_n``,
   0 = all) and each cache entry keeps its per-image results, so the ``worst`` column (per
   image, correct under every attack) is computed from the cache too. After every row, ``OUT/<table>/results.json`` and ``results.md`` are
   rewritten atomically.

Example:
    >>> plan = build_plan("table6", ReproduceOptions(scale="mini", only=("row1",), out="/tmp/rr-doc-plan"))
    >>> [(r.row.id, len(r.runs)) for r in plan.rows]
    [('row1', 1)]
    >>> plan.rows[0].runs[0].cfg.data.name, plan.rows[0].runs[0].cfg.model.name
    ('cifar10-mini', 'small_cnn')
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import yaml

from robustrain.artifacts import RunDir
from robustrain.config import CONFIG_DIR, Config, config_from_dict, config_to_dict, load_config, upgrade_saved_config
from robustrain.reproduce.scale import MINI_EPOCHS, MINI_EVAL_N, SCALES, Scale
from robustrain.reproduce.tables import TABLES, Row, Table
from robustrain.utils.errors import ReproduceError

__all__ = [
    "CONFIG_DIR",
    "EXTRA_DATA_ENV",
    "ReproduceError",
    "ReproduceOptions",
    "RunSpec",
    "RowPlan",
    "Plan",
    "build_plan",
    "describe_images",
    "format_plan",
    "format_tables",
    "config_fingerprint",
    "parse_extra_data",
]

#: ``DATASET=PATH[,DATASET=PATH]``: generated-data files when ``--extra-data`` is not given
EXTRA_DATA_ENV = "ROBUSTRAIN_EXTRA_DATA"


@dataclass(frozen=True)
class ReproduceOptions:
    """What to reproduce and how.

    Attributes:
        scale: ``mini`` (default) or ``full`` (:data:`robustrain.reproduce.scale.SCALES`).
        seeds: number of seeds (0 .. seeds-1) per row; the table shows mean ± sample std.
        only: row ids or shell patterns (``*-cifar10``); empty = every row.
        out: output folder (default ``runs/reproduce-<scale>``).
        sets: ``key=value`` overrides applied last to every run; HAT's helpers (plain standard
            training) get all but the ``method.*`` ones.
        attacks: evaluate only these attacks (e.g. ``natural,pgd20``); None = the table's.
        eval_n: test images for every accuracy column, AutoAttack included (the first
            ``eval_n`` of the test split; None: the scale's; 0 = all): one image set per table.
        aa_n: deprecated alias of ``eval_n`` (it used to size the AutoAttack column alone). Given
            alone it is used as ``eval_n`` with a ``FutureWarning``; given with a different
            ``eval_n`` it is an error (two sizes would put the columns on different images).
            Always None after construction.
        eval_batch_size: evaluation batch size (None: each run's ``data.eval_batch_size``).
        data_root: folder of the dataset files for full-scale runs (``data.root``).
        extra_data: dataset -> generated-data file (Table 4); default from ``$ROBUSTRAIN_EXTRA_DATA``.
        config_dir: where the rows' YAML files live (default: the repository's ``configs/``).
    """

    scale: str = "mini"
    seeds: int = 1
    only: tuple[str, ...] = ()
    out: str | Path | None = None
    sets: tuple[str, ...] = ()
    attacks: tuple[str, ...] | None = None
    eval_n: int | None = None
    aa_n: int | None = None
    eval_batch_size: int | None = None
    data_root: str | None = None
    extra_data: Mapping[str, str] = field(default_factory=dict)
    config_dir: str | Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_data", MappingProxyType(dict(self.extra_data)))
        if self.scale not in SCALES:
            raise ReproduceError(f"unknown scale {self.scale!r}; use one of {', '.join(SCALES.names())}")
        if self.seeds < 1:
            raise ReproduceError(f"--seeds must be >= 1, got {self.seeds}")
        for name, v in (("--eval-n", self.eval_n), ("--aa-n", self.aa_n)):
            if v is not None and v < 0:
                raise ReproduceError(f"{name} must be >= 0 (0 = the whole test split), got {v}")
        if self.aa_n is not None:
            if self.eval_n is not None and self.eval_n != self.aa_n:
                raise ReproduceError(
                    f"--aa-n {self.aa_n} with --eval-n {self.eval_n}: every column of a table is now evaluated on "
                    "the same images, so there is one size; drop the deprecated --aa-n and keep --eval-n")
            warnings.warn(f"aa_n / --aa-n is deprecated: every column is evaluated on the same images; "
                          f"using eval_n={self.aa_n} for all of them (pass --eval-n instead)", FutureWarning,
                          stacklevel=3)
            object.__setattr__(self, "eval_n", self.aa_n)
            object.__setattr__(self, "aa_n", None)
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ReproduceError(f"--eval-batch-size must be >= 1, got {self.eval_batch_size}")


def parse_extra_data(items: list[str] | tuple[str, ...] | str | None) -> dict[str, str]:
    """``["cifar10=/g/c10.npz", "cifar100=/g/c100.npz"]`` (or one comma-separated string) -> dict.

    Example:
        >>> parse_extra_data("cifar10=/g/a.npz,cifar100=/g/b.npz")
        {'cifar10': '/g/a.npz', 'cifar100': '/g/b.npz'}
    """
    if not items:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                continue
            key, sep, path = part.partition("=")
            if not sep or not key.strip() or not path.strip():
                raise ReproduceError(f"--extra-data {part!r} is not DATASET=PATH (e.g. cifar10=/data/cifar10_ddpm.npz)")
            out[key.strip()] = path.strip()
    return out


#: config keys (dotted) left out of :func:`config_fingerprint` while they hold the value given
#: here: keys added after presets were pinned, at the default that trains what the preset
#: always trained (or that do not change what is trained), so existing fingerprints, and the
#: reproduce folders found by them, stay valid. Add new keys here; never remove one.
FINGERPRINT_OMIT_AT_DEFAULT: dict[str, object] = {
    # streaming datasets (issue 20): ignored by the in-memory datasets every preset uses
    "data.image_size": 224,
    "data.resize": 256,
    "data.workers": 4,
    "data.on_corrupt": "error",
    "data.test_root": None,
    # mid-epoch checkpoints and per-sample state storage (issue 20): checkpoint frequency does
    # not change what is trained; ``auto`` stores small tables in fp32 exactly as before
    "train.checkpoint_every": 0,
    "train.sample_state": "auto",
    # experiment trackers (issue 21): logging only (config_to_dict writes the tuple as a list)
    "train.loggers": [],
    "train.log_artifacts": False,
    "train.tracker_project": "",
    # the evaluation radius (issue 20's ImageNet presets at 4/255): null keeps each attack's own
    "eval.eps": None,
}


#: keys added after the presets were pinned that never change what is trained (logging, where
#: and how often files are written, decoding processes): left out of :func:`config_fingerprint`
#: whatever their value, so a run with a tracker on, or checkpoints inside epochs, is found again
#: by reproduce. (Older keys of that kind, ``train.tensorboard`` and ``train.log_every``, stay in
#: the hash: removing them would change every pinned fingerprint.)
_ANY = object()  # FINGERPRINT_IGNORED: any value is dropped
FINGERPRINT_IGNORED = ("train.loggers", "train.log_artifacts", "train.tracker_project", "train.checkpoint_every",
                       "data.workers")


def _omit_at_default(d: dict) -> dict:
    """``d`` (a config dict) without the :data:`FINGERPRINT_IGNORED` keys and the
    :data:`FINGERPRINT_OMIT_AT_DEFAULT` keys that hold their default."""
    omitted = {**FINGERPRINT_OMIT_AT_DEFAULT, **{key: _ANY for key in FINGERPRINT_IGNORED}}
    for key, default in omitted.items():
        *parents, leaf = key.split(".")
        node = d
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and (default is _ANY or node[leaf] == default):
            del node[leaf]
    return d



def config_fingerprint(cfg: Config) -> str:
    """A hash of everything that changes what a run trains (all but ``out_dir`` and ``name``).

    Method and model parameters count with their defaults filled in (``config_to_dict`` spells
    them out), so a file that spells a default out (``universal: true``) and one that leaves it
    implicit are the same run.

    Example:
        >>> a = load_config(None, ["out_dir=/a", "name=x"])
        >>> config_fingerprint(a) == config_fingerprint(load_config(None, ["out_dir=/b", "method.lam=3.5"]))
        True
        >>> config_fingerprint(a) == config_fingerprint(load_config(None, ["seed=1"]))
        False
    """
    d = _omit_at_default(config_to_dict(cfg))
    d.pop("out_dir", None)
    d.pop("name", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ plan
@dataclass
class RunSpec:
    """One training run of the plan (a row's seed, or a HAT helper).

    Attributes:
        label: what the log lines call it.
        config: the row's YAML file.
        overrides: everything applied on top of it, in order.
        cfg: the resolved config.
        run_dir: the run's own folder ``OUT/<table>/<row>/seed<k>``.
        fingerprint: :func:`config_fingerprint` of ``cfg``.
        helper: the helper run HAT needs first.
        owner: an identical run of this plan whose folder this one shares.
        found: an identical run found on disk under ``OUT`` (trained or resumed there).
    """

    label: str
    config: Path
    overrides: tuple[str, ...]
    cfg: Config
    run_dir: Path
    fingerprint: str
    helper: RunSpec | None = None
    owner: RunSpec | None = None
    found: Path | None = None

    @property
    def train_dir(self) -> Path:
        """Where the run is (or will be) trained."""
        if self.owner is not None:
            return self.owner.train_dir
        return self.found if self.found is not None else self.run_dir

    def command(self, cwd: Path | None = None) -> str:
        """The ``robustrain train`` command that trains this run by hand.

        A packaged preset is named as ``configs/<table>/<row>.yaml`` from a checkout whose
        ``configs/`` links to it, else as ``<table>/<row>.yaml`` (``--config`` looks there).
        """
        cwd = cwd or Path.cwd()
        cfg_path = self.config
        try:
            preset = cfg_path.resolve().relative_to(CONFIG_DIR)
            cfg_path = Path("configs") / preset if (cwd / "configs").resolve() == CONFIG_DIR else preset
        except ValueError:
            try:
                cfg_path = cfg_path.relative_to(cwd)
            except ValueError:
                pass
        return "robustrain train --config " + " ".join(shlex.quote(str(a)) for a in (cfg_path, *self.overrides))


@dataclass
class RowPlan:
    """A selected row: its runs (one per seed), or why it is skipped."""

    row: Row
    runs: list[RunSpec]
    skip: str | None = None
    note: str = ""


@dataclass
class Plan:
    """Everything :func:`run_plan` does, resolved and validated."""

    table: Table
    scale: Scale
    options: ReproduceOptions
    out: Path
    rows: list[RowPlan]
    eval_n: int
    attacks: tuple[str, ...]

    def image_set(self, n_split: int | None = None) -> str:
        """The test images every accuracy column is measured on, in words (:func:`describe_images`)."""
        return describe_images(self.eval_n, n_split)

    @property
    def table_dir(self) -> Path:
        return self.out / self.table.name

    def specs(self) -> list[RunSpec]:
        """Every run to train, helpers before the runs that need them, each folder once."""
        seen: set[Path] = set()
        out: list[RunSpec] = []

        def add(spec: RunSpec) -> None:
            if spec.helper is not None:
                add(spec.helper)
            if spec.train_dir not in seen:
                seen.add(spec.train_dir)
                out.append(spec)

        for rp in self.rows:
            if rp.skip is None:
                for spec in rp.runs:
                    add(spec)
        return out


def describe_images(eval_n: int, n_split: int | None = None) -> str:
    """The test images of a table (the first ``eval_n``, 0 = all; ``n_split``: the split's
    size when known), in words.

    Example:
        >>> describe_images(256, 1017), describe_images(0, 1017), describe_images(0)
        ('the first 256 of the 1017 test images', 'all 1017 test images', 'all test images')
    """
    if eval_n and (n_split is None or eval_n < n_split):
        return f"the first {eval_n}" + (f" of the {n_split}" if n_split else "") + " test images"
    return "all " + (f"{n_split} " if n_split else "") + "test images"


def _select(table: Table, only: tuple[str, ...]) -> list[Row]:
    if not only:
        return list(table.rows)
    picked = []
    for pattern in only:
        hits = [r for r in table.rows if fnmatch.fnmatchcase(r.id, pattern)]
        if not hits:
            raise ReproduceError(f"--only {pattern!r} matches no row of {table.name}; rows: "
                                 + ", ".join(r.id for r in table.rows))
        picked += [r for r in hits if r not in picked]
    return [r for r in table.rows if r in picked]  # the paper's order


def _saved_fingerprint(config_file: Path) -> str | None:
    """The fingerprint of a run's saved config, None when it cannot be read as a config of this version
    (another robustrain version, a hand-edited file): such a run is never reused."""
    try:
        # a config older than a method field reads as what it was trained with (issue 19)
        return config_fingerprint(config_from_dict(upgrade_saved_config(yaml.safe_load(config_file.read_text()) or {})))
    except Exception:
        return None


def _scan_runs(out: Path) -> dict[Path, str | None]:
    """Run folder under ``out`` -> the fingerprint of its saved config (each read once per plan)."""
    if not out.is_dir():
        return {}
    return {path.parent: _saved_fingerprint(path) for path in sorted(out.rglob(RunDir.CONFIG))}


def _by_fingerprint(saved: dict[Path, str | None]) -> dict[str, list[Path]]:
    """fingerprint -> the run folders holding it (finished ones first)."""
    found: dict[str, list[Path]] = {}
    for folder, fp in saved.items():
        if fp is not None:
            found.setdefault(fp, []).append(folder)
    for dirs in found.values():
        dirs.sort(key=lambda d: not RunDir(d).summary.exists())
    return found


class _Planner:
    def __init__(self, options: ReproduceOptions, scale: Scale, out: Path, table: Table) -> None:
        self.options, self.scale, self.out = options, scale, out
        # a table may train its mini runs longer / select on more held-out images (the study)
        self.mini = {k: v for k, v in (("epochs", table.mini_epochs), ("eval_n", table.mini_eval_n))
                     if v is not None}
        self.config_dir = Path(options.config_dir) if options.config_dir else CONFIG_DIR
        if not self.config_dir.is_dir():
            raise ReproduceError(f"the rows' configs are not in {self.config_dir}: reinstall robustrain "
                                 "(they ship in the package, robustrain/configs/)")
        self.planned: dict[str, RunSpec] = {}
        self.saved = _scan_runs(out)
        self.on_disk = _by_fingerprint(self.saved)

    def spec(self, label: str, config: str, run_dir: Path, seed: int, extra: list[str], *,
             helper: bool = False) -> RunSpec:
        path = self.config_dir / config
        base = load_config(path)
        overrides = self.scale.overrides(base, **self.mini) + [
            f"seed={seed}", "eval.final_attacks=natural", f"out_dir={run_dir.parent}", f"name={run_dir.name}"]
        if self.options.data_root and not self.scale.mini:
            overrides.append(f"data.root={self.options.data_root}")
        sets = list(self.options.sets)
        if helper:  # a helper is plain standard training: the row's method overrides do not apply to it
            sets = [s for s in sets if not s.split("=", 1)[0].strip().split(".")[0] == "method"]
        overrides += extra + sets
        cfg = load_config(path, overrides)
        spec = RunSpec(label, path, tuple(overrides), cfg, run_dir, config_fingerprint(cfg))
        self._place(spec)
        return spec

    def _place(self, spec: RunSpec) -> None:
        own = RunDir(spec.run_dir).config
        if own.exists():
            theirs = self.saved[spec.run_dir] if spec.run_dir in self.saved else _saved_fingerprint(own)
            if theirs != spec.fingerprint:
                raise ReproduceError(
                    f"{spec.run_dir} holds a run of another config (changed --set, scale or config file?); "
                    "use another --out or delete that folder")
        if spec.fingerprint in self.planned and self.planned[spec.fingerprint].train_dir != spec.run_dir:
            spec.owner = self.planned[spec.fingerprint]
            return
        if not own.exists():
            others = [d for d in self.on_disk.get(spec.fingerprint, []) if d != spec.run_dir]
            if others:
                spec.found = others[0]
        self.planned.setdefault(spec.fingerprint, spec)


def _extra_paths(options: ReproduceOptions) -> dict[str, str]:
    paths = parse_extra_data(os.environ.get(EXTRA_DATA_ENV))
    paths.update(options.extra_data)
    return paths


def build_plan(table: str, options: ReproduceOptions | None = None) -> Plan:
    """Resolve and validate every run of ``table`` (nothing is trained or written).

    Raises:
        ReproduceError: unknown table/row, generated data missing at full scale, a run folder
            holding another config.
        ConfigError: a row config or ``--set`` override is invalid.
    """
    options = options or ReproduceOptions()
    try:
        spec_table = TABLES.get(table)
    except KeyError:
        raise ReproduceError(f"unknown table {table!r}; tables: {', '.join(TABLES.names())} "
                             "(see robustrain reproduce --list)") from None
    scale = SCALES.get(options.scale)
    out = Path(options.out) if options.out else Path(f"runs/reproduce-{scale.name}")
    planner = _Planner(options, scale, out, spec_table)
    extra_paths = _extra_paths(options)
    attack_cols = [c.source for c in spec_table.columns if c.is_attack]
    if options.attacks is not None:
        unknown = [a for a in options.attacks if a not in attack_cols]
        if unknown:
            raise ReproduceError(f"--attacks {','.join(unknown)}: not a column of {spec_table.name}; "
                                 f"its attacks: {','.join(attack_cols) or '(none)'}")
        attack_cols = [a for a in attack_cols if a in options.attacks]
    rows: list[RowPlan] = []
    for row in _select(spec_table, options.only):
        note = scale.note(dataset=row.dataset, model=row.model)
        extra: list[str] = []
        if row.extra_ratio is not None:
            key = "cifar10" if scale.mini else row.dataset  # a mini run trains on CIFAR-10 images
            path = extra_paths.get(key)
            if not path:
                if scale.mini:
                    rows.append(RowPlan(row, [], skip=(
                        "skipped: needs generated (DDPM) images and none exist offline; pass --extra-data "
                        f"{key}=FILE to run it"), note=note))
                    continue
                raise ReproduceError(
                    f"{spec_table.name} row {row.id} trains with 1M generated images: pass --extra-data "
                    f"{key}=FILE (or set {EXTRA_DATA_ENV}); see robustrain.data.npz for the file format")
            if not Path(path).exists():
                raise ReproduceError(f"generated-data file {path} (for {key}) does not exist; fix --extra-data")
            extra = [f"data.extra.path={Path(path).resolve()}", f"data.extra.ratio={row.extra_ratio}"]
        runs = []
        for seed in range(options.seeds):
            helper_extra: list[str] = []
            helper = None
            if row.helper is not None:
                stem = Path(row.helper).stem
                helper = planner.spec(f"helper {stem} seed {seed}", row.helper,
                                      out / "helpers" / stem / f"seed{seed}", seed, list(extra), helper=True)
                helper_extra = [f"method.helper={RunDir(helper.train_dir).last}"]
            spec = planner.spec(f"{spec_table.name} {row.id} seed {seed}", row.config,
                                out / spec_table.name / row.id / f"seed{seed}", seed, extra + helper_extra)
            spec.helper = helper
            runs.append(spec)
        rows.append(RowPlan(row, runs, note=note))
    eval_n = scale.eval_n if options.eval_n is None else options.eval_n
    return Plan(spec_table, scale, options, out, rows, eval_n, tuple(attack_cols))



# ------------------------------------------------------------------------- listings
def format_plan(plan: Plan) -> str:
    """The ``--dry-run`` text: rows, configs, the commands of each run, what exists already."""
    lines = [f"{plan.table.name} at {plan.scale.name} scale: {len(plan.rows)} rows x {plan.options.seeds} seed(s), "
             f"output {plan.table_dir}",
             f"  {plan.table.title}",
             f"  scale {plan.scale.name}: {plan.scale.help}"]
    if plan.scale.mini:
        lines.append("  mini override set on every row config: " + plan.scale.describe(
            epochs=plan.table.mini_epochs or MINI_EPOCHS, eval_n=plan.table.mini_eval_n or MINI_EVAL_N))
    lines.append("  harness overrides: seed=K eval.final_attacks=natural out_dir=OUT/<table>/<row> name=seedK "
                 "(+ method.helper=... for HAT, data.extra.* for Table 4, then --set)")
    lines.append(f"  evaluation: {', '.join(plan.attacks) or '(no attack columns)'} on {plan.image_set()} "
                 "(every column on the same images)")
    counts = {"new": 0, "started": 0, "partial": 0, "done": 0}
    shared = 0
    seen: set[Path] = set()
    for rp in plan.rows:
        head = f"  {rp.row.id:<22} {rp.row.label}  [configs/{rp.row.config}]"
        lines.append(head + (f"  ({rp.note})" if rp.note else ""))
        if rp.skip:
            lines.append(f"      {rp.skip}")
            continue
        for spec in rp.runs:
            for s in (spec.helper, spec):
                if s is None:
                    continue
                if s.train_dir in seen:
                    shared += 1
                    lines.append(f"      {s.label}: same config as {s.train_dir}, trained once")
                    continue
                seen.add(s.train_dir)
                state = RunDir(s.train_dir).state()
                counts[state] += 1
                where = s.train_dir if s.train_dir == s.run_dir else f"{s.train_dir} (an identical run found under OUT)"
                lines.append(f"      {s.label}: {state} -> {where}")
                if state != "done":
                    lines.append(f"        {s.command()}")
    lines.append(f"  training runs: {counts['new'] + counts['started']} to start, {counts['partial']} to resume, "
                 f"{counts['done']} finished; {shared} more reuse an identical run; then each row is evaluated")
    return "\n".join(lines)


def format_tables() -> str:
    """The ``--list`` text: every table and its rows with the paper's numbers."""
    lines = []
    for entry in TABLES:
        t = entry.obj
        lines.append(f"{t.name}: {t.title}")
        cols = ", ".join(f"{c.key} ({c.label})" for c in t.columns)
        lines.append(f"  columns: {cols}")
        for r in t.rows:
            paper = " ".join(f"{k}={v:g}" for k, v in r.paper.items()) or "(no published numbers stored)"
            extra = "".join([f"  helper: configs/{r.helper}" if r.helper else "",
                             "  needs generated data" if r.extra_ratio is not None else ""])
            lines.append(f"  {r.id:<22} configs/{r.config:<44} paper: {paper}{extra}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
