"""Logging callbacks: ``CSVLogger``, ``TensorBoard`` and ``ProgbarLogger`` (the progress display)."""
from __future__ import annotations

import collections.abc
import csv
import os
import sys
import time
import warnings
from typing import Optional

import jax
import numpy as np

from dlkit.callbacks.base import Callback


class CSVLogger(Callback):
    """Keras' ``CSVLogger``: write each epoch's logs to a CSV file, in Keras' format.

    The header is ``epoch`` then the first epoch's log keys, sorted; if those hold
    no ``val_`` key, ``val_<key>`` columns are added too (Keras does this so a file
    can later be appended to by a run with validation; they read ``NA``). ``epoch``
    is 0-based. ``append=True`` appends to an existing file, writing the header only
    if the file is empty.

    Args:
        filename: Path of the CSV file (``str`` or path-like).
        separator: The column delimiter.
        append: Append to an existing file rather than overwrite it.
    """

    def __init__(self, filename, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.writer = None
        self.keys: Optional[list] = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, encoding="utf-8", newline="") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        self._close()
        self.csv_file = open(self.filename, mode, encoding="utf-8", newline="")  # noqa: SIM115 - open until train end
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs.keys())
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys.extend([f"val_{key}" for key in self.keys])
        if self.writer is None:
            dialect = type("_Dialect", (csv.excel,), {"delimiter": self.sep})
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch", *self.keys], dialect=dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        self._close()
        self.writer = None

    def _close(self) -> None:
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()


def _csv_value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    if isinstance(value, collections.abc.Iterable):
        return f'"[{", ".join(map(str, value))}]"'
    return value


# Keras' TensorBoard options this version does not implement, with their defaults.
_TENSORBOARD_UNSUPPORTED = {"write_images": False, "embeddings_freq": 0, "embeddings_metadata": None}


def profile_range(profile_batch) -> tuple:
    """Keras' ``profile_batch`` as the 1-based ``(start, stop)`` batches to profile; ``(0, 0)``: none.

    Args:
        profile_batch: ``N`` (batch ``N`` alone; 0: no profiling), a pair ``(start, stop)`` of positive
            whole numbers (batches ``start`` to ``stop``, both included), or Keras' string ``'N'`` /
            ``'start,stop'``.

    Returns:
        ``(start, stop)``.

    Raises:
        ValueError: Anything else: a negative number, ``start > stop``, a pair holding 0, a non-integer.
    """
    problem = (f"TensorBoard: profile_batch must be a whole number >= 0 (0: no profiling) or a pair (start, stop) "
               f"of whole numbers with 1 <= start <= stop, got {profile_batch!r}.")
    value = profile_batch
    if isinstance(value, str):
        try:
            value = [int(part) for part in value.split(",")]
        except ValueError:
            raise ValueError(problem) from None
        value = value[0] if len(value) == 1 else value
    whole = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)  # noqa: E731
    if whole(value):
        start = stop = int(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(map(whole, value)) and min(value) >= 1:
        start, stop = map(int, value)
    else:
        raise ValueError(problem)
    if start < 0 or stop < start:
        raise ValueError(problem)
    return start, stop


class TensorBoard(Callback):
    """Keras' ``TensorBoard``: write each epoch's logs as TensorBoard scalars (with tensorboardX), laid
    out as Keras does, and, every ``histogram_freq`` epochs, histograms of the weights.

    Training values go to ``log_dir/train``, validation values to
    ``log_dir/validation`` without their ``val_`` prefix; the tags are
    ``epoch_<name>`` (``epoch_loss``, ``epoch_accuracy`` ...) and the step is the
    0-based epoch. The optimizer's learning rate is written as
    ``epoch_learning_rate`` when the model has one; with
    ``write_steps_per_second=True``, ``epoch_steps_per_second`` too. With
    ``histogram_freq=k``, at the end of epochs 0, k, 2k ... (as Keras) every
    weight is written to ``train/`` as a histogram tagged
    ``<layer>/<weight>/histogram`` (``dense/kernel/histogram``; moving
    statistics too), and, given ``activation_data``, each layer's outputs on
    that batch as ``<layer>/activations/histogram`` (one forward pass, compiled
    at each such epoch). Only ``update_freq='epoch'`` is supported (batch values
    would cost a device sync per step); Keras' image and embedding options are
    not implemented and warn if set; ``write_graph`` is accepted and ignored.

    ``profile_batch`` (Keras'): a JAX profiler trace (``jax.profiler.start_trace``) of training
    batches ``start`` to ``stop``, counted from 1 over the whole ``fit`` as Keras counts them, written
    under ``log_dir/train/plugins/profile/<run>/`` (``*.xplane.pb`` and ``*.trace.json.gz``), where
    TensorBoard's profile plugin looks. The device work is waited for at both ends, so the trace holds
    the profiled batches' programs and no others, each batch marked ``Profiled batch <index>`` (its
    0-based index in its epoch). With ``steps_per_execution > 1`` several batches are one compiled
    program, and the trace covers the whole programs that hold the range (over a stream of batches,
    one program each, it may start up to ``steps_per_execution - 1`` batches early). Only a profiling
    ``TensorBoard`` asks the loop for batch hooks; a trace that another profiler holds is skipped with
    a warning.

    Args:
        log_dir: The directory of the event files (``train/`` and ``validation/`` under it).
        histogram_freq: Write weight (and activation) histograms every this many epochs; 0: never.
        write_graph: Accepted and ignored.
        write_images: Not implemented; must stay False (else a warning).
        write_steps_per_second: Also write ``epoch_steps_per_second``.
        update_freq: ``'epoch'`` only (anything else warns).
        profile_batch: The batch ``N`` to profile, a pair ``(start, stop)`` (both included), or 0: none.
        embeddings_freq: Not implemented; must stay 0 (else a warning).
        embeddings_metadata: Not implemented; must stay ``None`` (else a warning).
        activation_data: A batch of inputs whose layer outputs are written with the weight histograms
            (dlkit's addition; Keras 3 writes weights only); ``None``: weights only.

    Raises:
        ValueError: ``histogram_freq`` is negative or not a whole number; ``profile_batch`` is not one of
            the forms above (``profile_range``).
    """

    def __init__(self, log_dir="logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False, update_freq="epoch",
                 profile_batch=0, embeddings_freq: int = 0, embeddings_metadata=None, activation_data=None):
        super().__init__()
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, (int, np.integer)) \
                or histogram_freq < 0:
            raise ValueError(f"histogram_freq must be a whole number >= 0 (epochs between histograms), got "
                             f"{histogram_freq!r}.")
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.activation_data = activation_data
        self.write_graph = write_graph
        self.write_steps_per_second = write_steps_per_second
        self._profile = profile_range(profile_batch)
        if self._profile[0]:  # only now does the loop call batch hooks for us
            self.on_train_batch_begin, self.on_train_batch_end = self._profile_begin, self._profile_end
        given = {"write_images": write_images, "embeddings_freq": embeddings_freq,
                 "embeddings_metadata": embeddings_metadata}
        ignored = [name for name, value in given.items() if value != _TENSORBOARD_UNSUPPORTED[name]]
        if update_freq != "epoch":
            ignored.append("update_freq")
        if ignored:
            warnings.warn(f"dlkit's TensorBoard writes epoch scalars and histograms only; ignoring "
                          f"{', '.join(ignored)}.", stacklevel=2)
        self._train_writer = self._val_writer = None
        self._epoch_began = None
        self._tracing = self._annotation = None
        self._batches_before = self._last_batch = 0

    @property
    def _train_dir(self) -> str:
        return os.path.join(self.log_dir, "train")

    @property
    def _val_dir(self) -> str:
        return os.path.join(self.log_dir, "validation")

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        from tensorboardX import SummaryWriter  # imported when used: it loads protobuf

        self._close()
        self._train_writer = SummaryWriter(self._train_dir)
        self._val_writer = None  # created on the first validation values
        self._writer_class = SummaryWriter
        self._batches_before, self._last_batch, self._tracing = 0, -1, None  # None: not yet; False: done

    def _profile_begin(self, batch: int, logs=None) -> None:
        """Start the trace before the program that runs batch ``start`` (it runs up to
        ``steps_per_execution`` batches from ``batch``)."""
        first = self._batches_before + batch + 1  # Keras' 1-based count over the whole fit
        last = first + max(1, int(getattr(self.model, "steps_per_execution", 1))) - 1
        start, stop = self._profile
        if self._tracing is None and first <= stop and last >= start:
            jax.block_until_ready(self.model.state)  # the earlier batches' work stays out of the trace
            try:
                jax.profiler.start_trace(self._train_dir)
                self._tracing = True
            except RuntimeError as error:  # another trace is running: profiling must not stop training
                warnings.warn(f"TensorBoard could not start the profiler ({error}); not profiling.", stacklevel=2)
                self._tracing = False
        if self._tracing:
            self._annotation = jax.profiler.TraceAnnotation(f"Profiled batch {batch}")
            self._annotation.__enter__()

    def _profile_end(self, batch: int, logs=None) -> None:
        """Stop the trace once the program that ran batch ``stop`` has finished."""
        self._last_batch = batch
        if self._tracing:
            self._annotation.__exit__(None, None, None)
            self._annotation = None
            if self._batches_before + batch + 1 >= self._profile[1]:
                self._stop_trace()

    def _stop_trace(self) -> None:
        if self._annotation is not None:  # fit raised inside a profiled program's hooks
            self._annotation.__exit__(None, None, None)
            self._annotation = None
        try:
            jax.block_until_ready(self.model.state)
        finally:
            jax.profiler.stop_trace()
            self._tracing = False

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._epoch_began = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._batches_before, self._last_batch = self._batches_before + self._last_batch + 1, -1
        logs = dict(logs or {})
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        if "learning_rate" not in train:
            rate = _learning_rate_or_none(self.model)
            if rate is not None:
                train["learning_rate"] = rate
        if self.write_steps_per_second and self._epoch_began is not None and self.params.get("steps"):
            train["steps_per_second"] = self.params["steps"] / max(time.perf_counter() - self._epoch_began, 1e-9)
        for name, value in train.items():
            self._train_writer.add_scalar(f"epoch_{name}", float(value), global_step=epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_histograms(epoch)
        self._train_writer.flush()
        if val:
            if self._val_writer is None:
                self._val_writer = self._writer_class(self._val_dir)
            for name, value in val.items():
                self._val_writer.add_scalar(f"epoch_{name}", float(value), global_step=epoch)
            self._val_writer.flush()

    def _write_histograms(self, epoch: int) -> None:
        """Every floating variable (its collection left out of the tag), then the layers' outputs on
        ``activation_data``, as histograms in ``train/`` at step ``epoch``."""
        from dlkit import inspection  # imported when used: it loads the layers

        variables = jax.device_get(self.model.state.variables)
        for path, value in jax.tree_util.tree_leaves_with_path(variables):
            value = np.asarray(value)
            if value.size and np.issubdtype(value.dtype, np.floating):
                tag = "/".join(str(getattr(key, "key", key)) for key in path[1:])
                self._train_writer.add_histogram(f"{tag}/histogram", value, global_step=epoch)
        if self.activation_data is not None:
            for name, value in inspection.activations(self.model, self.activation_data).items():
                self._train_writer.add_histogram(f"{name}/activations/histogram", np.asarray(value, np.float32),
                                                 global_step=epoch)

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        if self._tracing:  # fit ended inside the range (fewer batches, or stopped early)
            self._stop_trace()
        self._close()

    def _close(self) -> None:
        for writer in (self._train_writer, self._val_writer):
            if writer is not None:
                writer.close()
        self._train_writer = self._val_writer = None


def _learning_rate_or_none(model) -> Optional[float]:
    try:
        return float(model.learning_rate)
    except (AttributeError, ValueError, TypeError):
        return None


def format_logs(logs: dict) -> str:
    """Format logs as Keras prints them: ``'loss: 0.1234 - accuracy: 0.9500'``.

    Args:
        logs: ``{name: value}``; values below 1e-3 in magnitude (not 0) get scientific notation.

    Returns:
        The ``' - '``-joined ``'name: value'`` string.
    """
    return " - ".join(f"{key}: {_format_value(value)}" for key, value in logs.items())


def _format_value(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 or not np.isfinite(value) else f"{value:.4e}"


def _is_interactive(stream) -> bool:
    """Whether ``stream`` redraws a line on ``\\r`` (a terminal, or a Jupyter/IPython kernel's stdout)."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    return "ipykernel" in sys.modules and stream in (sys.stdout, sys.stderr)


class ProgbarLogger(Callback):
    """Keras' ``ProgbarLogger``: the progress display of ``fit``.

    ``verbose=1``: ``Epoch i/N``, then a tqdm bar per epoch moved by the step
    index of the batch hooks (it never reads batch ``logs``, so it forces no
    device sync), ending with the epoch's values:
    ``32/32 ██████ 00:01<00:00, loss: ... - accuracy: ...``. The bar follows the
    steps as they are dispatched; JAX runs them asynchronously, so it may run
    ahead and then wait at the epoch's end. Where the output is not a terminal
    (CI, a log file, a pipe) no bar is drawn and the epoch ends with one line,
    ``32/32 - 1.2s - loss: ... - accuracy: ...``.
    ``verbose=2``: one line per epoch, ``Epoch i/N - 1.2s - loss: ... - accuracy: ...``.
    ``verbose=0``: nothing. ``verbose=None`` (the default) takes ``params['verbose']``
    from ``fit``. Output goes to ``file``, default ``sys.stdout`` as it is when
    ``fit`` starts.

    The per-step hook is installed only when a bar is drawn, so at ``verbose=2``
    or off a terminal the loop runs no batch hooks for it.

    Args:
        verbose: 0, 1, 2, ``'auto'`` (1) or ``None`` (``fit``'s ``verbose``).
        file: The output stream; ``None``: ``sys.stdout`` as it is when ``fit`` starts.
    """

    def __init__(self, verbose: Optional[int] = None, file=None):
        super().__init__()
        self.verbose = verbose
        self.file = file
        self._bar = None
        self._epoch_began = 0.0
        self._mode = 0
        self._stream = None

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        verbose = self.verbose if self.verbose is not None else params.get("verbose", 1)
        self._mode = 1 if verbose == "auto" else int(verbose)
        self._stream = self.file if self.file is not None else sys.stdout
        self.__dict__.pop("on_train_batch_end", None)
        if self._mode == 1 and _is_interactive(self._stream):
            self.on_train_batch_end = self._advance  # only now does the loop call batch hooks for us

    @property
    def _out(self):
        return self.file if self.file is not None else (self._stream or sys.stdout)

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._epoch_began = time.perf_counter()
        if self._mode == 1:
            self._print(f"Epoch {epoch + 1}/{self.params.get('epochs')}")
            if "on_train_batch_end" in self.__dict__:
                from tqdm import tqdm  # imported when used

                self._close_bar()
                steps = self.params.get("steps")
                bar_format = ("{n_fmt}/{total_fmt} {bar} {elapsed}<{remaining}{postfix}" if steps
                              else "{n_fmt} steps - {elapsed}{postfix}")  # a batch iterable: no known total
                self._bar = tqdm(total=steps, file=self._out, unit="step", leave=True, dynamic_ncols=True,
                                 mininterval=0.1, bar_format=bar_format)

    def _advance(self, batch: int, logs=None) -> None:
        """Move the bar to step ``batch + 1`` (``batch`` is the last step index the loop ran)."""
        if self._bar is not None and batch + 1 > self._bar.n:
            self._bar.update(batch + 1 - self._bar.n)

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        seconds = time.perf_counter() - self._epoch_began
        values = format_logs(dict(logs or {}))
        if self._mode == 2:
            self._print(f"Epoch {epoch + 1}/{self.params.get('epochs')} - {seconds:.1f}s - {values}")
        elif self._mode == 1:
            if self._bar is not None:
                steps = self.params.get("steps")
                if steps and self._bar.n < steps:
                    self._bar.update(steps - self._bar.n)
                self._bar.set_postfix_str(values, refresh=False)
                self._close_bar()
            else:
                steps = self.params.get("steps")
                progress = f"{steps}/{steps} - " if steps else ""
                self._print(f"{progress}{seconds:.1f}s - {values}")

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
