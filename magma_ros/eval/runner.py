"""Offline evaluation of one bag: stream frames, predict (or read recorded predictions), score,
and write report.json, frames.csv and actions.png."""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, get_args

import numpy as np

from ..actions.decoder import ActionDecoder
from ..actions.errors import ActionContractError
from ..actions.gripper import GripperConverter
from ..actions.profiles import RobotProfile
from ..actions.tokenizer import ACTION_DIM, LLAMA3_BASE_VOCAB, ActionTokenizer
from ..policy.base import Policy, PolicyError
from ..progress import Progress
from .bag import format_time, open_bag
from .convert import ConversionError, check_action_values
from .errors import BagError
from .metrics import MetricsAccumulator
from .report import FrameCsv, plot_actions, summary_text, write_json
from .stream import ActionSource, Frame, FrameStream, Skip, SkipKind

MAX_ISSUES = 200  # issues listed in the report (all are counted)
MAX_WARNINGS_PER_KIND = 3  # issues printed on stderr per kind


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and where to write it."""

    bag: Path
    out_dir: Path
    profile: RobotProfile
    image_topic: str
    instruction_topic: str | None  # None when ``instruction`` is given
    instruction: str | None
    truth: ActionSource
    recorded: ActionSource | None = None  # read predictions from the bag instead of a backend
    max_delay_s: float = 1.0
    every: int = 1
    plots: bool = True
    progress: bool = True


class _Episode:
    def __init__(self, index: int, instruction: str, t_ns: int, span: np.ndarray, bin_dims: int,
                 profile: RobotProfile) -> None:
        self.index, self.instruction, self.start_ns, self.end_ns = index, instruction, t_ns, t_ns
        self.metrics = MetricsAccumulator(span, bin_dims)
        self.pred_gripper = GripperConverter(profile.gripper)
        self.true_gripper = GripperConverter(profile.gripper)


class Evaluator:
    """Scores frames of one bag against a policy or recorded predictions."""

    def __init__(self, options: EvalOptions, policy: Policy | None, backend_name: str,
                 log: TextIO | None = None) -> None:
        if (policy is None) == (options.recorded is None):
            raise ValueError("give exactly one of a policy and a recorded prediction source")
        self.options, self.policy, self.backend_name = options, policy, backend_name
        self.log = log or sys.stderr
        vocab = policy.vocab_size if policy is not None else LLAMA3_BASE_VOCAB
        self.decoder = ActionDecoder(options.profile.stats, ActionTokenizer(vocab_size=vocab))
        stats = options.profile.stats
        self.span = np.asarray(stats.q99) - np.asarray(stats.q01)
        self.pred_units = options.recorded.gripper_units if options.recorded else "model"
        self.true_units = options.truth.gripper_units
        # The gripper axis is compared in model units when both sides have them, else as commands.
        self.gripper_in_model_units = self.pred_units == self.true_units == "model"
        self.bin_dims = ACTION_DIM if self.gripper_in_model_units else ACTION_DIM - 1
        if not self.gripper_in_model_units:
            self.span = self.span.copy()
            self.span[6] = 1.0  # commands are in [0, 1]
        self.skips: Counter[str] = Counter({kind: 0 for kind in get_args(SkipKind)})
        self.issues: list[dict[str, Any]] = []
        self.overall = MetricsAccumulator(self.span, self.bin_dims)
        self.episodes: list[_Episode] = []
        self.start_ns: int | None = None

    def run(self) -> dict[str, Any]:
        """Evaluate the whole bag; returns the report (also written to ``out_dir``)."""
        opts = self.options
        try:
            opts.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BagError(f"output directory {opts.out_dir}: cannot create: {exc.strerror or exc}") from None
        csv_path, json_path, png_path = (opts.out_dir / "frames.csv", opts.out_dir / "report.json",
                                         opts.out_dir / "actions.png")
        read_error = None
        started = time.monotonic()
        with open_bag(opts.bag) as reader:
            self.start_ns = int(reader.start_time)
            stream = FrameStream(reader, opts.bag, image_topic=opts.image_topic,
                                 instruction_topic=opts.instruction_topic, instruction=opts.instruction,
                                 truth=opts.truth, recorded=opts.recorded, max_delay_s=opts.max_delay_s,
                                 every=opts.every)
            storage = _storage_of(opts.bag)
            progress = Progress(stream.total_images, "eval", enabled=opts.progress, stream=self.log)
            frames_csv = FrameCsv(csv_path)
            try:
                for item in stream:
                    if isinstance(item, Skip):
                        self._skip(item)
                    else:
                        self._evaluate(item, frames_csv)
                    progress.update(stream.images_seen)
            except BagError as exc:
                read_error = str(exc)
            finally:
                frames_csv.close()
                progress.close()
            images = stream.images_seen
        elapsed = time.monotonic() - started
        report = self._report(storage, images, elapsed, read_error)
        outputs = {"report": str(json_path), "frames_csv": str(csv_path)}
        if opts.plots and self.overall.frames:
            plot_actions(csv_path, png_path, self.overall.frames,
                         f"{opts.bag.name}: {self.prediction_label()} vs recorded ({opts.profile.name})")
            outputs["plot"] = str(png_path)
        report["outputs"] = outputs
        write_json(report, json_path)
        return report

    def prediction_label(self) -> str:
        """Where predictions come from, for the report and the plot."""
        if self.options.recorded is not None:
            return "recorded " + ", ".join(self.options.recorded.describe().values())
        return f"backend {self.backend_name}"

    def _skip(self, skip: Skip) -> None:
        self.skips[skip.kind] += 1
        if skip.kind == "stride":  # asked for: counted, not listed
            return
        if len(self.issues) < MAX_ISSUES:
            self.issues.append({"kind": skip.kind, "topic": skip.topic, "time_ns": skip.t_ns,
                                "time": format_time(skip.t_ns), "message": skip.message})
        count = self.skips[skip.kind]
        if count <= MAX_WARNINGS_PER_KIND:
            print(f"warning: {skip.kind}: {skip}", file=self.log)
        if count == MAX_WARNINGS_PER_KIND + 1:
            print(f"warning: more {skip.kind} frames are counted in the report only", file=self.log)

    def _predict(self, frame: Frame) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(action, ids, latency) for the frame, or None after counting a failure."""
        if self.options.recorded is not None:
            action = frame.recorded
            assert action is not None and frame.recorded_t_ns is not None
            return action, self._encode(action), (frame.recorded_t_ns - frame.t_ns) / 1e9
        assert self.policy is not None
        start = time.perf_counter()
        try:
            prediction = self.policy.predict(frame.image, frame.instruction)
        except PolicyError as exc:
            self._skip(Skip("policy_error", self.options.image_topic, frame.t_ns, f"frame {frame.index}: {exc}"))
            return None
        latency = time.perf_counter() - start
        try:
            if prediction.token_ids is not None:
                return self.decoder.decode_ids(prediction.token_ids), prediction.token_ids, latency
            assert prediction.action is not None
            check_action_values(np.asarray(prediction.action, dtype=np.float64), "predicted action")
            return prediction.action, self._encode(prediction.action), latency
        except (ActionContractError, ConversionError) as exc:
            self._skip(Skip("bad_prediction", self.options.image_topic, frame.t_ns, f"frame {frame.index}: {exc}"))
            return None

    def _encode(self, action: np.ndarray) -> np.ndarray:
        return self.decoder.encode(action)

    def _evaluate(self, frame: Frame, frames_csv: FrameCsv) -> None:
        result = self._predict(frame)
        if result is None:
            return
        predicted, pred_ids, latency = result
        episode = self._episode(frame)
        truth = frame.truth.copy()
        predicted = predicted.copy()
        pred_cmd = episode.pred_gripper(predicted[6]) if self.pred_units == "model" else predicted[6]
        true_cmd = episode.true_gripper(truth[6]) if self.true_units == "model" else truth[6]
        if not self.gripper_in_model_units:
            predicted[6], truth[6] = pred_cmd, true_cmd
        truth_ids = self._encode(truth)
        for acc in (self.overall, episode.metrics):
            acc.add(predicted, truth, pred_ids, truth_ids, pred_cmd, true_cmd, latency)
        episode.end_ns = frame.t_ns
        exact = bool(np.all(pred_ids[: self.bin_dims] == truth_ids[: self.bin_dims]))
        frames_csv.write(frame.index, episode.index, (frame.t_ns - (self.start_ns or 0)) / 1e9, frame.t_ns,
                         frame.instruction, predicted, truth, pred_cmd, true_cmd, exact, latency)

    def _episode(self, frame: Frame) -> _Episode:
        if not self.episodes or self.episodes[-1].index != frame.episode:
            self.episodes.append(_Episode(frame.episode, frame.instruction, frame.t_ns, self.span, self.bin_dims,
                                          self.options.profile))
        return self.episodes[-1]

    def _report(self, storage: str, images: int, elapsed: float, read_error: str | None) -> dict[str, Any]:
        opts = self.options
        start = self.start_ns or 0
        return {
            "bag": str(opts.bag),
            "storage": storage,
            "robot": opts.profile.name,
            "predictions": {"source": self.prediction_label(), "gripper_units": self.pred_units},
            "ground_truth": {**opts.truth.describe(), "gripper_units": self.true_units},
            "gripper_axis_compared_as": "model value" if self.gripper_in_model_units else "command in [0, 1]",
            "topics": {"image": opts.image_topic, "instruction": opts.instruction_topic,
                       "fixed_instruction": opts.instruction},
            "settings": {"every": opts.every, "max_delay_s": opts.max_delay_s,
                         "control_period_s": opts.profile.control_period_s},
            "frames": {"images": images, "evaluated": self.overall.frames, "skipped": dict(self.skips)},
            "overall": self.overall.summary(),
            "episodes": [
                {"index": e.index, "instruction": e.instruction, "start_s": (e.start_ns - start) / 1e9,
                 "end_s": (e.end_ns - start) / 1e9, **e.metrics.summary()}
                for e in self.episodes
            ],
            "issues": self.issues,
            "issues_listed": f"{len(self.issues)} of {sum(self.skips.values()) - self.skips['stride']}",
            "read_error": read_error,
            "wall_time_s": elapsed,
            "frames_per_s": self.overall.frames / elapsed if elapsed > 0 else None,
        }


def _storage_of(bag: Path) -> str:
    """``mcap`` or ``sqlite3``, from the storage files' suffixes."""
    files = [bag] if bag.is_file() else list(bag.iterdir())
    suffixes = {f.suffix for f in files}
    return "mcap" if ".mcap" in suffixes else "sqlite3" if ".db3" in suffixes else "unknown"


def print_summary(report: dict[str, Any], stream: TextIO | None = None) -> None:
    """The text summary on stdout."""
    print(summary_text(report), file=stream or sys.stdout)
