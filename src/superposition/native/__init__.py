"""The native step: a small C kernel (`step.c`) that runs many training steps per call.

For the paper's tied models (linear, relu_output, relu_hidden) on independent dense features with
the fused optimisers, the step's cost at small sizes is not arithmetic but dispatch: an eager step
of 5 → 2 × 10 issues some fifty tensor operations of a few microseconds each, and a compiled one
still pays dynamo's guards per call plus a 15-30 s first compile and a ~4 s load from the cache.
The kernel computes the same maths (the data bit for bit, the gradients and updates up to float
rounding) for `count` steps in one call, an instance at a time with the batch innermost, so its
inner loops vectorise; it builds with the system's C compiler in about half a second, once per
machine, into the folder of torch's Inductor cache (so an empty compile cache is empty of it too).

`train(..., compile="auto")` takes it where `unsupported` is None and the library builds; every
other configuration, a machine without a C compiler, or a build that fails, takes the torch paths.
Its results do not depend on timings, on the thread count or on the other instances of the batch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from .. import compiling
from ..config import PRESETS, RunConfig
from ..data import FeatureSpec

SOURCE = Path(__file__).with_name("step.c")
ENABLE_ENV = "SUPERPOSITION_NATIVE"
"""Set to 0 to keep `compile="auto"` on the torch paths (`compile="native"` still takes the native step)."""
KINDS = {"linear": 0, "relu_output": 1, "relu_hidden": 2}
OPTIMIZERS = {"adam": 0, "adamw": 1, "sgd": 2}
VERSION = 3  # sp_version() of step.c

_FAST_MATH = ["-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
FLAG_SETS = (
    ["-O3", "-march=native", "-mprefer-vector-width=512", *_FAST_MATH, "-fopenmp"],
    ["-O3", "-march=native", *_FAST_MATH, "-fopenmp"],
    ["-O3", "-march=native", *_FAST_MATH],
    ["-O3", *_FAST_MATH],
)
"""Tried in order until one builds: widest vectors first (measured at 5 → 2 × 10 on a 2-core Xeon with
AVX-512: 133 µs per step at -O3 -march=native, 91 µs with the reassociation that lets reductions
vectorise, 66 µs with 512-bit vectors), OpenMP over instances where the compiler has it."""


class _Args(ctypes.Structure):
    _fields_ = [
        *[(name, ctypes.c_int) for name in ("kind", "optimizer", "signed_inputs", "nesterov", "threads")],
        *[(name, ctypes.c_int64) for name in ("n_inst", "n_feat", "n_hidden", "batch", "start", "count")],
        *[(name, ctypes.c_float) for name in ("beta1", "beta2", "eps", "weight_decay", "momentum")],
        *[(name, ctypes.c_void_p) for name in ("W", "b", "W1", "W2", "b1", "b2", "keys", "threshold",
                                                "importance", "lrs", "l1", "loss_sum", "data")],
    ]


def enabled() -> bool:
    """Whether `compile="auto"` may take the native step (`ENABLE_ENV`)."""
    return os.environ.get(ENABLE_ENV, "1") != "0"


def unsupported(config: RunConfig, device: torch.device | str = "cpu") -> str | None:
    """Why the native step cannot train `config` on `device`, or None when it can."""
    m, d, t = config.model, config.data, config.train
    kind = m.fused_kind
    checks = (
        (torch.device(device).type == "cpu", f"device {device} (the native step runs on the CPU)"),
        (kind in KINDS, f"model {kind or 'custom'} (native: {', '.join(KINDS)})"),
        (kind is None or config.target == PRESETS[kind].target, f"train.target = {config.target!r}"),
        (t.loss == "mse" and t.gradients in ("auto", "fused"), f"train.loss = {t.loss!r}, gradients {t.gradients!r}"),
        (t.optimizer in OPTIMIZERS, f"train.optimizer = {t.optimizer!r}"),
        (not t.has_adversarial, "adversarial training"),
        (d.sampler == "dense", f"data.sampler = {d.sampler!r}"),
    )
    if d.n_train is None:  # the kernel draws the data itself
        checks += (
            (d.distribution == "independent", f"data.distribution = {d.distribution!r}"),
            (d.magnitude == "uniform", f"data.magnitude = {d.magnitude!r}"),
            (not d.normalize, "data.normalize"),
        )
    else:  # it reads the set `data.dataset` drew, whatever its law
        checks += ((t.batch_size >= d.n_train,
                    f"a finite training set in minibatches (batch_size {t.batch_size} < n_train {d.n_train})"),)
    reasons = [why for ok, why in checks if not ok]
    return "; ".join(reasons) if reasons else None


_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}
_failures: dict[str, str] = {}


def library_folder() -> Path:
    """Where built kernels are kept: beside the compile records, in torch's Inductor cache folder."""
    return compiling.record_path().parent / "superposition-native"


def compiler() -> str | None:
    """The C compiler: $CC, else cc, gcc or clang on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"].split()[0])
    return next((found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)


def library() -> ctypes.CDLL:
    """The built kernel, building it on first use (about half a second); raises `NativeUnavailableError`
    when there is no C compiler or no flag set builds."""
    cc = compiler()
    if cc is None:
        raise NativeUnavailableError("no C compiler found (set CC, or install gcc or clang)")
    with _lock:
        if cc in _loaded:
            return _loaded[cc]
        if cc in _failures:
            raise NativeUnavailableError(_failures[cc])
        try:
            lib = _build_or_load(cc)
        except NativeUnavailableError as exc:
            _failures[cc] = str(exc)
            raise
        _loaded[cc] = lib
        return lib


class NativeUnavailableError(RuntimeError):
    """The native step cannot be built or loaded on this machine."""


def _build_or_load(cc: str) -> ctypes.CDLL:
    source = SOURCE.read_bytes()
    try:  # the compiler's identity: its file, not `cc --version` (a process start in every run)
        real = os.path.realpath(cc)
        info = os.stat(real)
        version = f"{real} {info.st_size} {info.st_mtime_ns}"
    except OSError as exc:
        raise NativeUnavailableError(f"{cc}: {exc.strerror}") from None
    folder = library_folder()
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, cc.encode(), version.encode(), " ".join(flags).encode(),
                                         _cpu_identity()])).hexdigest()[:20]
        path = folder / f"step-{key}.so"
        if not path.is_file():
            error = _compile(cc, flags, path)
            if error is not None:
                errors.append(error)
                continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            errors.append(f"loading {path}: {exc}")
            continue
        if lib.sp_version() != VERSION:
            errors.append(f"{path}: version {lib.sp_version()}, expected {VERSION}")
            continue
        lib.sp_train_steps.argtypes = [ctypes.POINTER(_Args)]
        lib.sp_train_steps.restype = ctypes.c_int
        return lib
    raise NativeUnavailableError("the native step did not build: " + (errors[-1] if errors else "no flag set"))


def _cpu_identity() -> bytes:
    """What `-march=native` builds for: the CPU's model and feature flags where Linux says them, so a
    cache folder shared between machines never hands one a library with instructions it lacks."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")]
        return "\n".join(dict.fromkeys(wanted)).encode() + platform.machine().encode()
    except OSError:
        return f"{platform.machine()} {platform.processor()}".encode()


def _compile(cc: str, flags: list[str], path: Path) -> str | None:
    """Build `path` atomically (a temporary name, then a rename); the compiler's error, or None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".so.tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        return f"cannot write {path.parent}: {exc.strerror}"
    try:
        done = subprocess.run([cc, *flags, "-shared", "-fPIC", "-o", tmp, str(SOURCE), "-lm"],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["failed"]
            return next((line for line in lines if "error" in line), lines[-1])
        os.replace(tmp, path)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{cc}: {exc}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class NativeStep:
    """`count` training steps of one run per call, in place on its state (`train.TrainState`)."""

    def __init__(self, config: RunConfig, spec: FeatureSpec, lrs: Tensor, l1: Tensor,
                 train_set: Tensor | None = None):
        """`train_set` ``[inst, T, feat]``: the finite training set of a run with `data.n_train`, used
        whole at every step (`data.minibatch` with batch_size ≥ T)."""
        reason = unsupported(config, spec.keys.device)
        if reason is not None:
            raise ValueError(f"the native step cannot train this run: {reason}")
        self.lib = library()
        t = config.train
        self._keep = {  # contiguous CPU tensors the kernel reads; kept alive with the step
            "keys": spec.keys.contiguous(),
            "threshold": torch.ceil(spec.probability.double() * 2.0**24).to(torch.int64).contiguous(),
            "importance": spec.importance.float().contiguous(),
            "lrs": lrs.float().contiguous(),
            "l1": l1.float().contiguous() if t.has_l1 else None,
            "data": train_set.float().contiguous() if train_set is not None else None,
        }
        n_inst, n, m = config.n_instances, config.model.n_features, config.model.n_hidden
        if (config.data.n_train is None) != (train_set is None):
            raise ValueError("native step: a finite training set is needed exactly when data.n_train is set")
        if train_set is not None and tuple(train_set.shape) != (n_inst, config.data.n_train, n):
            raise ValueError(f"native step: train_set has shape {tuple(train_set.shape)}, expected "
                             f"{(n_inst, config.data.n_train, n)}")
        batch = t.batch_size if train_set is None else config.data.n_train
        self.args = _Args(kind=KINDS[config.model.fused_kind], optimizer=OPTIMIZERS[t.optimizer],
                          signed_inputs=int(bool(config.data.signed)), nesterov=int(t.nesterov),
                          n_inst=n_inst, n_feat=n, n_hidden=m, batch=batch,
                          beta1=t.betas[0], beta2=t.betas[1], eps=t.eps, weight_decay=t.resolved_weight_decay,
                          momentum=t.momentum)
        for name, tensor in self._keep.items():
            setattr(self.args, name, tensor.data_ptr() if tensor is not None else None)

    def __call__(self, params: dict[str, Tensor], state1: dict[str, Tensor], state2: dict[str, Tensor],
                 step: Tensor, loss_sum: Tensor, count: int) -> None:
        """Advance `count` steps from `step` (0-d int64, updated); every tensor must be contiguous."""
        tensors = {"W": params["W"], "b": params["b"], "W1": state1["W"], "b1": state1["b"],
                   "W2": state2["W"], "b2": state2["b"], "loss_sum": loss_sum}
        for name, tensor in tensors.items():
            if not tensor.is_contiguous() or tensor.dtype != torch.float32:
                raise ValueError(f"native step: {name} must be a contiguous float32 tensor")
            setattr(self.args, name, tensor.data_ptr())
        self.args.start, self.args.count = int(step), count
        self.args.threads = max(1, min(torch.get_num_threads(), self.args.n_inst))
        if self.lib.sp_train_steps(ctypes.byref(self.args)) != 0:
            raise MemoryError("native step: could not allocate its scratch memory")
        step.add_(count)
