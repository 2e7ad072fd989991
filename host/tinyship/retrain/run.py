"""One run of the retrain job (see `tinyship.retrain.job`): the steps in order, each
decision appended to the audit log, ending in one outcome of `job.OUTCOMES`."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np

from tinyship.config import Config
from tinyship.errors import DataError, TinyshipError
from tinyship.retrain import triggers as T
from tinyship.retrain.job import (
    Progress,
    RetrainOptions,
    RetrainResult,
    champion_predictions,
    new_run_id,
)

#: The job's Prometheus textfile, in the reports folder (point the textfile collector at it
#: or copy it there).
METRICS_FILE = "tinyship-retrain.prom"


class _Stop(Exception):
    """Ends the run with an outcome (not an error)."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class Run:
    def __init__(self, cfg: Config, opts: RetrainOptions, progress: Progress) -> None:
        from tinyship.audit import AuditLog, default_audit_path
        from tinyship.registry import Registry

        self.cfg = cfg
        self.rc = cfg.retrain
        self.opts = opts
        self.say = progress
        self.now = opts.now or dt.datetime.now(dt.UTC)
        self.registry = Registry(cfg.registry_path)
        self.audit = AuditLog(default_audit_path(self.registry.root))
        self.result = RetrainResult(run_id=new_run_id(self.now), outcome="refused")
        self._fresh = False
        self._frame: Any = None
        self._champion_rows: int | None = None
        self._champion_seen: np.ndarray | None = None
        self.report_dir = (opts.report_dir or cfg.resolve(self.rc.reports)) / \
            self.result.run_id
        self._t0 = time.monotonic()

    # --- the run ---------------------------------------------------------------------------

    def execute(self) -> RetrainResult:
        r = self.result
        self.event("run_started", details={"new_data": str(self.opts.new_data),
                                           "force": self.opts.force})
        try:
            self._steps()
        except _Stop as stop:
            r.outcome = stop.outcome
            r.reasons.append(stop.reason)
        except TinyshipError as e:
            r.outcome = "refused"
            r.reasons.append(f"{type(e).__name__}: {e}")
            self.event("refusal", decision="refused", reason=str(e))
        except Exception as e:  # a bug: still a report and a closed run, then exit 1
            r.outcome = "refused"
            r.reasons.append(f"internal error {type(e).__name__}: {e}")
            self._finish_run()
            raise
        self._finish_run()
        return r

    def _finish_run(self) -> None:
        r = self.result
        if r.outcome == "refused" and r.challenger and not any(
                "registered but not promoted" in x for x in r.reasons):
            r.reasons.append(f"{r.challenger} stays registered but not promoted")
        r.timings_s["total"] = round(time.monotonic() - self._t0, 3)
        self._write_report()
        self.event("run_finished", decision=r.outcome, reason="; ".join(r.reasons),
                   details={"exit_code": r.exit_code, "report": r.report_dir})

    def _steps(self) -> None:
        snap = self._ingest()
        champion = self._champion()
        self._locate_champion_data(champion, snap)
        batch = self._batch(snap)
        if len(batch):
            self._triggers(champion, snap, batch)
        elif not self.opts.force:  # production was trained on all of this data
            raise _Stop("nothing_due", f"no new rows: production was trained on snapshot "
                        f"{snap.id}'s data")
        else:
            self.result.triggers = [T.manual(True).to_dict()]
            self.event("trigger", decision="fired", reason="retraining forced",
                       details=self.result.triggers[0])
        prep, tr, conv, gate_result = self._challenger(snap, champion)
        decision = self._compare(champion, prep, conv, snap)
        version = self._register(prep, tr, conv, gate_result, champion, snap, decision)
        self._build(version)
        self._hil(version, champion)
        self._promote(version, champion)
        self._reflash(version)

    # --- steps -----------------------------------------------------------------------------

    def _ingest(self) -> Any:
        from tinyship.data.store import DatasetStore, QuarantinedBatch

        self.say(f"ingesting {self.opts.new_data}")
        store = DatasetStore.for_registry(self.registry.root)
        before = store.latest()
        try:
            snap = store.ingest(self.opts.new_data, self.cfg)
        except QuarantinedBatch as e:
            self.event("quarantine", decision="quarantined", reason=str(e),
                       details={"path": str(self.opts.new_data)})
            raise _Stop("refused", f"new data quarantined: {e}") from None
        #: The batch added rows: `snap.new_rows_path` holds them (else it is an earlier
        #: batch's, and there are no recent rows to judge).
        self._fresh = before is None or snap.id != before.id
        self.result.snapshot = {**snap.to_dict(), "new_rows_this_run": self._fresh}
        self.event("ingest", snapshot=snap.id, details=self.result.snapshot)
        return snap

    def _champion(self) -> str | None:
        """Production; without the alias, the newest version no earlier run refused."""
        production = self.registry.aliases().get("production")
        if production is None:
            refused = {e.challenger for e in self.audit.list(kind="refusal") if e.challenger}
            production = next((v for v in reversed(self.registry.versions())
                               if v not in refused), None)
        self.result.champion = production
        return production

    def _snapshot_frame(self, snap: Any) -> Any:
        """The snapshot's rows, all columns, in file order (the order every split and
        index of this run refers to)."""
        import pandas as pd

        if self._frame is None:
            self._frame = pd.read_csv(snap.data_path)
        return self._frame

    def _locate_champion_data(self, champion: str | None, snap: Any) -> None:
        """How many leading rows of the snapshot production was trained on (snapshots only
        append), and which of them it trained or validated on (its own split, recomputed):
        the comparison must not score it on rows it learned from."""
        from tinyship.data.store import DatasetStore

        self._champion_rows = None
        self._champion_seen = None
        if champion is None:
            return
        m = self.registry.manifest(champion)
        sha = (m.get("data") or {}).get("sha256")
        store = DatasetStore.for_registry(self.registry.root)
        found = store.find(str(sha)) if sha else None
        chain, cur = set(), snap
        while cur is not None:  # the current snapshot and its ancestors
            chain.add(cur.id)
            cur = store.get(cur.parent) if cur.parent else None
        if found is None or found.id not in chain:
            return
        n = int(found.rows_total)
        self._champion_rows = n
        frame = self._snapshot_frame(snap)
        try:
            from tinyship.config import parse_config
            from tinyship.train.split import split_indices

            ccfg = parse_config(m["config"], base_dir=self.registry.root)
            head = frame.iloc[:n]
            target = head[ccfg.data.target]
            splits = split_indices(
                n, test_fraction=ccfg.training.test_fraction,
                val_fraction=ccfg.training.val_fraction, seed=ccfg.training.seed,
                stratify=target.astype(str).to_numpy() if m.get("task") == "classification"
                else None,
                groups=head[ccfg.data.group].to_numpy() if ccfg.data.group else None)
        except (TinyshipError, KeyError, ValueError) as e:
            self.result.reasons.append(f"production's split could not be recomputed ({e}): "
                                       "its training rows may be among the compared ones")
            return
        seen = np.zeros(len(frame), dtype=bool)
        seen[np.asarray(splits.train)] = True
        seen[np.asarray(splits.val)] = True
        self._champion_seen = seen

    def _batch(self, snap: Any) -> Any:
        """The rows production has not been trained on: after its data in the snapshot,
        else (its data is not in the store) the rows this ingest added."""
        frame = self._snapshot_frame(snap)
        if self._champion_rows is not None:
            return frame.iloc[self._champion_rows:]
        return frame.iloc[len(frame) - int(snap.rows_new):] if self._fresh else frame.iloc[:0]

    def _triggers(self, champion: str | None, snap: Any, batch: Any) -> None:
        """Evaluate every trigger; none fired -> nothing due."""
        rc, fired = self.rc, []
        if champion is None:
            fired.append(T.Trigger("no_production", True, None, None,
                                   "the registry has no version yet"))
            self.result.triggers = [t.to_dict() for t in fired]
            self.event("trigger", decision="fired", reason="no production version")
            return
        m = self.registry.manifest(champion)
        features = list(m["features"])
        missing = [f for f in [*features, self.cfg.data.target] if f not in batch.columns]
        if missing:
            raise DataError(f"the new data lacks production's columns: {', '.join(missing)}")
        x_new = batch[features].to_numpy(np.float64)
        pred = champion_predictions(self.registry, champion, x_new)
        on_new = self._metrics(m["task"], batch, pred, m)
        drift = self._drift(champion, batch, features, pred)
        trained_rows = int(m.get("data", {}).get("rows", 0))
        new_rows = max(int(snap.rows_total) - trained_rows, int(snap.rows_new))
        ts = [
            T.schedule(rc, m.get("created"), self.now),
            T.volume(rc, new_rows),
            T.performance(rc, m["task"], m.get("metrics", {}).get("int8", {}), on_new),
            T.data_drift(rc, drift),
            T.prediction_drift(rc, drift),
            T.manual(self.opts.force),
        ]
        self.result.triggers = [t.to_dict() for t in ts]
        for t in ts:
            self.event("trigger", decision="fired" if t.fired else "not_fired",
                       reason=t.detail, details=t.to_dict())
        fired = [t for t in ts if t.fired]
        if not fired:
            raise _Stop("nothing_due", "no trigger fired: " + "; ".join(
                f"{t.name} {t.value} (threshold {t.threshold})" for t in ts
                if t.threshold is not None))
        self.result.reasons.append("fired: " + ", ".join(t.name for t in fired))

    def _metrics(self, task: str, batch: Any, pred: np.ndarray, m: dict[str, Any]
                 ) -> dict[str, Any]:
        from tinyship.pipeline import long_tail_mask, task_metrics

        target = batch[self.cfg.data.target]
        if task == "classification":
            classes = [str(c) for c in m.get("classes", [])]
            labels = target.astype(str).to_numpy()
            known = np.isin(labels, classes)  # a class production never saw has no score
            y = np.array([classes.index(v) for v in labels[known]], dtype=np.int64)
            return task_metrics(task, y, pred[known], len(classes),
                                (np.zeros(len(y), bool), ""))
        from tinyship.monitor.production import load_reference

        y = target.to_numpy(np.float64)
        # production's long tail, cut where its registered metric was cut
        ref = load_reference(self.registry, self.result.champion)
        return task_metrics(task, y, pred, 0,
                            long_tail_mask(y, np.asarray(ref.y_reference, np.float64),
                                           self.cfg))

    def _drift(self, champion: str, batch: Any, features: list[str], pred: np.ndarray
               ) -> dict[str, Any]:
        import json

        from tinyship.data.profile import PROFILE_FILE as DRIFT_PROFILE
        from tinyship.monitor.drift import drift_report

        if DRIFT_PROFILE not in self.registry.artifacts(champion):
            self.result.drift = {"unavailable": f"{champion} has no {DRIFT_PROFILE}"}
            return {}
        profile = json.loads(self.registry.read_artifact(champion, DRIFT_PROFILE))
        pr = pred.argmax(axis=1) if pred.ndim == 2 and pred.shape[1] > 1 else pred.reshape(-1)
        report = drift_report(profile, batch, feature_names=features,
                              critical=self.rc.critical_features,
                              current_predictions=np.asarray(pr, np.float64),
                              warn=self.rc.psi_warning, alert=self.rc.psi_alert)
        self.report_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(ImportError):  # matplotlib is an optional extra
            report.write_png(self.report_dir / "drift.png")
        doc: dict[str, Any] = report.to_dict()
        self.result.drift = doc
        return doc

    def _challenger(self, snap: Any, champion: str | None) -> tuple[Any, Any, Any, Any]:
        from tinyship.pipeline import (
            KERAS_FILE,
            Prepared,
            _Timer,
            convert_stage,
            gate_stage,
            prepare_data,
            train_stage,
        )

        timer = _Timer(self.say)
        prep = prepare_data(self.cfg, Path(snap.data_path), timer)
        assert isinstance(prep, Prepared)  # force=True: never a duplicate's result
        warm = self.opts.warm_start if self.opts.warm_start is not None else self.rc.warm_start
        start = None
        if warm and champion is not None:
            if list(self.registry.manifest(champion)["features"]) != prep.features:
                raise _Stop("refused", "--warm-start needs production's inputs: its features "
                            "differ from the config's")
            self.result.warm_start = True
            from tinyship.convert.quantize import quiet_tensorflow

            tf = quiet_tensorflow()
            start = tf.keras.models.load_model(self.registry.path(champion) / KERAS_FILE)
        tr = train_stage(self.cfg, prep, timer, warm_start=start)
        conv = convert_stage(self.cfg, prep, tr, timer)
        gate_result = gate_stage(self.cfg, self.registry, prep, tr, conv, timer)
        self.result.timings_s.update(timer.timings)
        return prep, tr, conv, gate_result

    def _compare(self, champion: str | None, prep: Any, conv: Any, snap: Any) -> Any:
        from tinyship.retrain.compare import compare, decide, guards, linear_baseline

        if champion is None:
            return None
        m = self.registry.manifest(champion)
        if prep.task == "classification" and [str(c) for c in m.get("classes", [])] != \
                prep.classes:
            raise _Stop("refused", f"the classes changed ({m.get('classes')} -> "
                        f"{prep.classes}): the models cannot be compared row by row; a "
                        "person decides (tinyship registry promote)")
        frame = self._snapshot_frame(snap)
        if len(frame) != len(prep.y_all):
            raise _Stop("refused", "the snapshot's rows do not line up with the training "
                        "rows: the models cannot be compared row by row")
        test = np.asarray(prep.splits.test)
        # rows production learned from are no held-out rows for it
        keep = np.ones(len(test), dtype=bool) if self._champion_seen is None else \
            ~self._champion_seen[test]
        missing = [f for f in m["features"] if f not in frame.columns]
        if missing:
            raise _Stop("refused", f"production's inputs {missing} are not in the data: "
                        "the models cannot be compared")
        x_champ = frame[list(m["features"])].to_numpy(np.float64)[test[keep]]
        champ = champion_predictions(self.registry, champion, x_champ)
        chal = conv.predictions[keep]
        _, y_te = prep.part("test")
        y_te = y_te[keep]
        slices: dict[str, np.ndarray] = {}
        tail_mask, tail_desc = prep.tail
        if tail_mask[keep].any():
            slices[f"long tail ({tail_desc})"] = tail_mask[keep]
        first_new = self._champion_rows if self._champion_rows is not None else (
            len(frame) - int(snap.rows_new) if self._fresh else len(frame))
        recent = test[keep] >= first_new  # snapshots append: newer rows come last
        if recent.any():
            slices["recent (new data)"] = recent
        task = prep.task
        self.result.reasons.append(f"compared on {int(keep.sum())} held-out rows neither "
                                   "model trained on")
        cmp_ = compare(task, y_te, champ, chal, slices=slices, n_classes=prep.n_classes,
                       alpha=self.rc.alpha, min_effect=self.rc.min_effect,
                       min_samples=self.rc.min_samples)
        m = self.registry.manifest(champion)["model"]
        gs = guards({"model_bytes": m.get("bytes"), "arena_bytes": m.get("arena_bytes")},
                    {"model_bytes": len(conv.int8_tflite), "arena_bytes": conv.arena},
                    latency_ratio=self.rc.latency_ratio,
                    max_model_bytes=self.cfg.board.model_max_bytes,
                    max_arena_bytes=self.cfg.board.arena_max_bytes)
        x_tr, y_tr = prep.part("train")
        x_te, _ = prep.part("test")
        self.result.baseline = linear_baseline(task, x_tr, y_tr, x_te, y_te,
                                               n_classes=prep.n_classes)
        decision = decide(cmp_, gs)
        self.result.comparison = cmp_.to_dict()
        self.result.guards = [g.to_dict() for g in gs]
        self.event("comparison", decision="better" if decision.promote else "not_better",
                   reason="; ".join(decision.reasons), details=self.result.comparison)
        if not decision.promote:
            raise _Stop("not_better", "champion kept: " + "; ".join(decision.reasons))
        return decision

    def _register(self, prep: Any, tr: Any, conv: Any, gate_result: Any,
                  champion: str | None, snap: Any, decision: Any) -> str:
        from tinyship.pipeline import register_stage

        lineage = {"parent": champion, "data_snapshot": snap.id,
                   "run_id": self.result.run_id,
                   "comparison": None if decision is None else {
                       "promote": decision.promote, "reasons": decision.reasons,
                       **{k: (self.result.comparison or {}).get(k)
                          for k in ("p_value", "effect_size", "n")}}}
        version = register_stage(self.cfg, self.registry, prep, tr, conv, gate_result,
                                 lineage=lineage)
        self.result.challenger = version
        from tinyship.tracking import log_training

        gate_result.version = version
        log_training(self.cfg, gate_result, version=version,
                     version_dir=self.registry.path(version),
                     tags={"tinyship.retrain_run": self.result.run_id,
                           "tinyship.parent": str(champion)})
        self.event("register", versions=(champion, version), snapshot=snap.id,
                   details=lineage)
        return version

    def _fleet(self) -> Any:
        """The fleet to reflash (`--fleet`, else `retrain.fleet`), or None."""
        from tinyship.deploy.fleet import load_fleet

        path = self.opts.fleet or (self.cfg.resolve(self.rc.fleet) if self.rc.fleet else None)
        return None if path is None else load_fleet(Path(path))

    def _build(self, version: str) -> None:
        """The challenger's firmware for every env the fleet names (virtual boards take
        the registry version itself); a failed build is a refusal: nothing promoted."""
        from tinyship.deploy.flash import VIRTUAL_ENV
        from tinyship.errors import BuildError
        from tinyship.firmware.build import build

        fleet = self._fleet()
        envs = sorted({b.env for b in fleet.boards if b.env and b.env != VIRTUAL_ENV}
                      if fleet is not None else set())
        for env in envs:
            self.say(f"building {version} for {env}")
            try:
                build(self.cfg.resolve(self.rc.project_dir), self.registry, env, version,
                      pio=[self.rc.pio] if self.rc.pio else None)
            except BuildError as e:
                self.event("refusal", decision="build_failed", reason=str(e),
                           details={"env": env})
                raise _Stop("refused", f"{version} does not build for {env}: {e}") from None
            self.event("build", decision="built", reason=f"{version} for {env}",
                       details={"env": env})

    def _hil(self, version: str, champion: str | None) -> None:
        """The challenger on the rig; a failure is never promoted. The device latency
        guard compares its p99 with the champion's on the same rig."""
        report = self._hil_run(version)
        doc = {"version": version, "passed": report.passed,
               "latency_us": report.latency_us,
               "failed": [c.to_dict() for c in report.failed_checks]}
        self.result.hil = doc
        if not report.passed:
            self.event("refusal", versions=(champion, version), decision="hil_failed",
                       reason="; ".join(c.name for c in report.failed_checks), details=doc)
            raise _Stop("refused", f"{version} failed HIL validation: " + "; ".join(
                f"{c.name} ({c.detail})" for c in report.failed_checks))
        self.event("validation", versions=(champion, version), decision="passed",
                   reason=f"HIL on {self.opts.hil_device or self.rc.hil_device}", details=doc)
        if champion is not None:
            base = self._hil_run(champion)
            p_new, p_old = report.latency_us.get("p99"), base.latency_us.get("p99")
            doc["champion_latency_us"] = base.latency_us
            if p_new is not None and p_old and p_new > self.rc.latency_ratio * p_old:
                reason = (f"device p99 latency {p_new:.0f} us > {self.rc.latency_ratio} x "
                          f"champion's {p_old:.0f} us")
                self.event("refusal", versions=(champion, version), decision="latency",
                           reason=reason)
                raise _Stop("refused", reason)

    def _hil_run(self, version: str) -> Any:
        from tinyship.hil.harness import validate

        device = self.opts.hil_device or self.rc.hil_device
        self.say(f"HIL validation of {version} on {device}")
        if device != "virtual":
            return validate(device, self.registry.root, version, board_cfg=self.cfg.board)
        from tinyship.device.virtual import VirtualBoard

        with VirtualBoard(self.registry.root, version, board=self.cfg.board, baud=0,
                          boot_delay_s=0.0) as vb:
            return validate(vb.url, self.registry.root, version, board_cfg=self.cfg.board,
                            baud=0)

    def _promote(self, version: str, champion: str | None) -> None:
        """Automatic promotion: refused while a person holds production (the hold and the
        promotion are appended to the audit log by the registry, under its lock)."""
        from tinyship.registry import PromotionHeld

        try:
            self.registry.promote(version, automatic=True, audit=self.audit,
                                  run_id=self.result.run_id,
                                  reason=f"{version} beat {champion} and passed HIL")
        except PromotionHeld as e:
            h = e.hold
            raise _Stop("awaiting_approval",
                        f"{version} is ready, production is held ({h.reason}, by {h.author} "
                        f"since {h.since}): `tinyship registry promote {version}` "
                        "continues") from None
        self.result.reasons.append(f"promoted {version}")

    def _reflash(self, version: str) -> None:
        fleet = self._fleet()
        if fleet is None:
            self.result.outcome = "deployed"
            self.result.reasons.append("no fleet to reflash")
            return
        from tinyship.deploy.flash import DeployContext
        from tinyship.deploy.fleet import flash_fleet

        ctx = DeployContext.from_config(self.cfg)
        res = flash_fleet(fleet, version, ctx,
                          smoke_vectors=self.rc.smoke_vectors)
        self.result.fleet = res.to_dict()
        for b in res.boards:
            o = b.outcome
            self.event("reflash", versions=(o.from_version, o.to_version),
                       decision=o.result, reason=o.message or "",
                       details={"device": o.url, "label": o.label,
                                "device_id": o.device_id, "exit_code": o.exit_code})
        self.result.outcome = "deployed" if res.exit_code == 0 else "deployed_with_failures"
        counts = res.counts()
        self.result.reasons.append("fleet: " + ", ".join(f"{n} {k}" for k, n in
                                                         counts.items()))

    # --- bookkeeping -----------------------------------------------------------------------

    def event(self, kind: str, *, decision: str | None = None, reason: str | None = None,
              versions: tuple[str | None, str | None] | None = None,
              snapshot: str | None = None, details: dict[str, Any] | None = None) -> None:
        champion, challenger = versions or (self.result.champion, self.result.challenger)
        self.audit.record(kind=kind, run_id=self.result.run_id, decision=decision,
                          reason=reason, champion=champion, challenger=challenger,
                          snapshot=snapshot or (self.result.snapshot or {}).get("id"),
                          details=details or {})

    def _write_report(self) -> None:
        from tinyship.retrain.report import write_report

        self.report_dir.mkdir(parents=True, exist_ok=True)
        self.result.report_dir = str(self.report_dir)
        write_report(self.result, self.report_dir)
        self._write_metrics()

    def _write_metrics(self) -> None:
        """`<reports>/tinyship-retrain.prom` for node_exporter's textfile collector: this
        run's outcome and time only; `tinyship monitor --prom-file` exports the rest (two
        files holding one series would fail the scrape)."""
        from tinyship.monitor.prom import build_registry, write_textfile

        registry = build_registry(last_retrain_time=dt.datetime.now(dt.UTC),
                                  last_retrain_outcome=self.result.outcome)
        path = self.report_dir.parent / METRICS_FILE
        write_textfile(path, registry)
        self.result.metrics_file = str(path)
