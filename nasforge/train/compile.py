"""Compiling the training step (`TrainConfig.compile`): `off`, `blocks` (torch.compile) or `graphs` (CUDA graphs).

`blocks`: every elastic block runs a pure functional body (`mbconv_body`: its active weights in, its
output out) under a static signature (kernel size, stride, activation, residual, BN settings). Each
signature is compiled with dynamic shapes, so one compiled body serves every block and subnet with that
signature (channel counts vary freely); the number of compiled bodies is bounded by the space's
signatures, and each body may recompile at most `max_compiles` times (inductor on the CPU specializes
convolutions' spatial sizes, so there each input resolution is a recompile) before it stays eager.
Weight slicing and the kernel transformation stay outside, eager (they are what the step shares); module
hooks on a block's layers do not fire inside a compiled step (they do everywhere else). If
compilation fails (no C++ compiler, an unsupported op), a warning is given once and that body runs
eagerly; the step's results are the same either way.

`graphs` (CUDA only; elsewhere it warns once and behaves as `blocks`): additionally the members whose
shape never changes are captured as CUDA graphs and replayed: the frozen teacher (per input shape, a few
at most) and the largest subnet at the top resolution and the smallest at the bottom (the sandwich rule's
fixed members), forward and backward, with `torch.cuda.make_graphed_callables`. Capturing runs a few
warm-up passes, so BN statistics and the RNG state are restored afterwards; each captured member replays
at most once per step (its gradients live in the graph's static memory until the optimizer step).
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.supernet import ElasticSupernet, StaticSubnet

COMPILE_MODES = ("off", "blocks", "graphs")


@dataclass
class _Body:
    fn: Callable[..., torch.Tensor]
    compiles: int = 0
    eager: bool = False


class BlockCompiler:
    """A `StepContext.runner`: runs `fn(*tensors, **static)` through one compiled function per (fn, static).

    Each signature gets its own copy of `fn`'s code object, so torch.compile keeps a separate cache (and a
    separate recompile budget) per signature instead of all signatures competing for `fn`'s.
    """

    def __init__(self, backend: str | Callable[..., Any] = "inductor", max_compiles: int = 8,
                 dynamic: bool = True) -> None:
        self.backend, self.max_compiles, self.dynamic = backend, max_compiles, dynamic
        self._bodies: dict[Any, _Body] = {}
        self._warned = False

    @property
    def signatures(self) -> int:
        return len(self._bodies)

    def compiles(self) -> int:
        """How many graphs were compiled in all (each signature's first compile plus its recompiles)."""
        return sum(b.compiles for b in self._bodies.values())

    def __call__(self, fn: Callable[..., torch.Tensor], tensors: tuple[Any, ...], static: dict[str, Any]
                 ) -> torch.Tensor:
        key = (fn, _freeze(static), _absent(tensors))  # an optional input (SE, downsample) is part of the signature
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = self._compile(fn, static, len(self._bodies))
        if body.eager or body.compiles > self.max_compiles:
            return fn(*tensors, **static)
        try:
            with _no_duck_sizing():
                return body.fn(tensors[0], *_plain(tensors[1:]))
        except Exception as exc:  # compilation failed: this signature runs eagerly from now on
            body.eager = True
            self._warn(f"torch.compile of {fn.__name__} failed ({type(exc).__name__}: {str(exc)[:200]}); "
                       "running it eagerly")
            return fn(*tensors, **static)

    def _compile(self, fn: Callable[..., torch.Tensor], static: dict[str, Any], number: int) -> _Body:
        body = _Body(fn)
        # a function of its own (own code object: own compile cache) with the signature as keyword defaults
        code = fn.__code__.replace(co_name=f"{fn.__name__}_sig{number}")
        clone = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
        clone.__kwdefaults__ = {**(fn.__kwdefaults__ or {}), **static}
        from torch._dynamo.backends.registry import lookup_backend

        inner = lookup_backend(self.backend) if isinstance(self.backend, str) else self.backend

        def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
            body.compiles += 1
            return inner(gm, example_inputs)

        body.fn = torch.compile(clone, backend=counting_backend, dynamic=self.dynamic, fullgraph=True)
        return body

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(message, RuntimeWarning, stacklevel=3)


def _absent(value: Any) -> Any:
    """Where `value` (nested tuples of tensors) holds None: compiled code specializes on it."""
    if isinstance(value, (list, tuple)):
        return tuple(_absent(v) for v in value)
    return value is None


def _plain(value: Any) -> Any:
    """Weights as row-major tensor views: dynamo guards on type, strides and view-ness and gives parameters
    static shapes, so a full-width weight (the parameter itself, maybe channels_last) and a slice of it (a
    strided view) would each compile anew. (Small copies: weights, not activations; the input stays as is.)"""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, torch.Tensor) and value.dim() > 1 and value.stride() != _row_major(value.shape):
        value = value.clone(memory_format=torch.contiguous_format)
    return value.view_as(value) if isinstance(value, torch.Tensor) else value  # always a view: guards see one kind


def _row_major(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _no_duck_sizing() -> Any:
    """Sizes that happen to be equal (a block's width and its expanded width, say) stay separate symbols,
    instead of a guard that recompiles the first time they differ."""
    from torch.fx.experimental import _config

    return _config.patch(use_duck_shape=False)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


class _Member(nn.Module):
    """The supernet with one arch fixed: what a captured training member runs."""

    def __init__(self, net: ElasticSupernet, arch: ArchConfig) -> None:
        super().__init__()
        self.net, self.arch = net, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.net.active(self.arch), self.net.outside_step():
            return self.net(x)  # type: ignore[no-any-return]


class CudaGraphs:
    """Captured fixed-shape members of the step (see the module docstring); CUDA only."""

    def __init__(self, net: ElasticSupernet, max_teacher_graphs: int = 4) -> None:
        self.net = net
        space = net.space
        self.fixed = {space.largest(), space.smallest()}
        self.max_teacher_graphs = max_teacher_graphs
        self._members: dict[Any, Callable[[torch.Tensor], torch.Tensor] | None] = {}
        self._teachers: dict[Any, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None] = {}
        self._used: set[Any] = set()
        self._warned = False
        self.failed = False

    def begin_step(self) -> None:
        self._used.clear()

    def forward(self, arch: ArchConfig, x: torch.Tensor) -> torch.Tensor | None:
        """The member's output from its graph, or None (not a fixed member, already used this step, failed)."""
        if self.failed or arch not in self.fixed or not torch.is_grad_enabled():
            return None
        key = (arch, tuple(x.shape), x.dtype, x.is_contiguous(memory_format=torch.channels_last),
               torch.is_autocast_enabled("cuda"), self.net.training)
        if key in self._used:
            return None
        if key not in self._members:
            self._members[key] = self._capture_member(arch, x)
        graphed = self._members[key]
        if graphed is None:
            return None
        self._used.add(key)
        return graphed(x)

    def _capture_member(self, arch: ArchConfig, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        buffers = [b.detach().clone() for b in self.net.buffers()]
        cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state(x.device)
        try:
            # every supernet parameter is an input of the graph; the ones this member does not use get None
            graphed = torch.cuda.make_graphed_callables(_Member(self.net, arch), (x.detach().clone(),),
                                                        allow_unused_input=True)
        except Exception as exc:
            self._fail(exc)
            return None
        finally:  # the warm-up passes must leave no trace in the training state
            with torch.no_grad():
                for b, saved in zip(self.net.buffers(), buffers):
                    b.copy_(saved)
            torch.set_rng_state(cpu_rng)
            torch.cuda.set_rng_state(cuda_rng, x.device)
        return graphed  # type: ignore[no-any-return]

    def teacher(self, teacher: StaticSubnet, x: torch.Tensor) -> torch.Tensor | None:
        if self.failed:
            return None
        key = (id(teacher), tuple(x.shape), x.dtype, x.is_contiguous(memory_format=torch.channels_last),
               torch.is_autocast_enabled("cuda"))
        if key not in self._teachers:
            if len(self._teachers) >= self.max_teacher_graphs:
                return None
            self._teachers[key] = self._capture_teacher(teacher, x)
        entry = self._teachers[key]
        if entry is None:
            return None
        graph, static_x, static_y = entry
        static_x.copy_(x)
        graph.replay()
        return static_y

    def _capture_teacher(self, teacher: StaticSubnet, x: torch.Tensor
                         ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None:
        try:
            static_x = x.detach().clone()
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up (library autotuning) outside the capture
                    teacher(static_x)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_y = teacher(static_x)
        except Exception as exc:
            self._fail(exc)
            return None
        return graph, static_x, static_y

    def _fail(self, exc: Exception) -> None:
        self.failed = True
        if not self._warned:
            self._warned = True
            warnings.warn(f"CUDA graph capture failed ({type(exc).__name__}: {str(exc)[:200]}); running eagerly",
                          RuntimeWarning, stacklevel=4)


class StepCompiler:
    """How `TrainStep` runs the supernet and the teacher under `TrainConfig.compile`."""

    def __init__(self, mode: str, net: ElasticSupernet, device: torch.device, *,
                 backend: str | Callable[..., Any] = "inductor") -> None:
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {mode!r}")
        self.mode, self.net, self.device = mode, net, device
        self.blocks = BlockCompiler(backend) if mode in ("blocks", "graphs") else None
        net.step_context().runner = self.blocks
        self.graphs: CudaGraphs | None = None
        if mode == "graphs":
            if device.type == "cuda":
                self.graphs = CudaGraphs(net)
            else:
                warnings.warn("compile: graphs needs CUDA; compiling blocks only", RuntimeWarning, stacklevel=3)

    @property
    def autocast_cache(self) -> bool:
        """CUDA graphs need autocast's weight-cast cache off (a cached cast would be captured stale)."""
        return self.graphs is None

    def begin_step(self) -> None:
        if self.graphs is not None:
            self.graphs.begin_step()

    def forward(self, arch: ArchConfig, x: torch.Tensor) -> torch.Tensor:
        if self.graphs is not None:
            out = self.graphs.forward(arch, x)
            if out is not None:
                return out
        return self.net(x)  # type: ignore[no-any-return]

    def teacher(self, teacher: StaticSubnet, x: torch.Tensor) -> torch.Tensor:
        if self.graphs is not None:
            out = self.graphs.teacher(teacher, x)
            if out is not None:
                return out
        return teacher(x)  # type: ignore[no-any-return]
