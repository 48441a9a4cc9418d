"""Call contracts of the TensorRT/CUDA code, which cannot run here: every call into a TensorRT/CUDA module of
the project is bound to the callee's signature with inspect.Signature.bind, so an arity error (such as the
export pipeline calling build_engine with 5 of its 6 required arguments) fails on any CPU-only machine.
Calls into TensorRT and cuda-python themselves are checked by mypy against stubs/ (.ci/typecheck); where
TensorRT imports, the stubs are checked against it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The project's modules that drive TensorRT or CUDA (callees), by import name -> file.
TRT_MODULES = {
    "edge_vsd.export.tensorrt_build": "export/tensorrt_build.py",
    "edge_vsd.runtimes.tensorrt": "runtimes/tensorrt.py",
    "edge_vsd.runtimes.cuda_device": "runtimes/cuda_device.py",
    "edge_vsd.runtimes.trt_support": "runtimes/trt_support.py",
    "edge_vsd.runtimes.register_engine": "runtimes/register_engine.py",
    "edge_vsd.runtimes.doctor": "runtimes/doctor.py",
    "edge_vsd.benchmarks.trt_timing": "benchmarks/trt_timing.py",
}
# Callers: the TensorRT modules themselves plus everything that reaches them.
CALLERS = [*TRT_MODULES.values(), "export/pipeline.py", "benchmarks/runner.py", "edge_vsd/cli.py"]


def _signature(fn: ast.FunctionDef, drop_self: bool) -> inspect.Signature:
    """inspect.Signature of a function definition, read from the source (the module may not import here)."""
    a = fn.args
    params: list[inspect.Parameter] = []
    positional = [*a.posonlyargs, *a.args]
    defaults = [inspect.Parameter.empty] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        kind = (
            inspect.Parameter.POSITIONAL_ONLY
            if i < len(a.posonlyargs)
            else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        params.append(inspect.Parameter(arg.arg, kind, default=default))
    if a.vararg:
        params.append(inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        params.append(
            inspect.Parameter(
                arg.arg,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if default is None else default,
            )
        )
    if a.kwarg:
        params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params[1:] if drop_self else params)


def _dataclass_signature(cls: ast.ClassDef) -> inspect.Signature:
    fields = [n for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    return inspect.Signature(
        [
            inspect.Parameter(
                f.target.id,  # type: ignore[union-attr]
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=inspect.Parameter.empty if f.value is None else f.value,
            )
            for f in fields
        ]
    )


def callee_signatures() -> dict[tuple[str, str], inspect.Signature]:
    """(module, name) -> signature of every top-level function and class constructor of TRT_MODULES."""
    out: dict[tuple[str, str], inspect.Signature] = {}
    for module, rel in TRT_MODULES.items():
        for node in ast.parse((ROOT / rel).read_text()).body:
            if isinstance(node, ast.FunctionDef):
                out[module, node.name] = _signature(node, drop_self=False)
            elif isinstance(node, ast.ClassDef):
                init = next(
                    (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
                )
                if init is not None:
                    out[module, node.name] = _signature(init, drop_self=True)
                elif any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                    out[module, node.name] = _dataclass_signature(node)
                else:
                    out[module, node.name] = inspect.Signature()
    return out


def call_sites(rel: str) -> list[tuple[int, str, str, ast.Call]]:
    """(line, module, name, call) for every call in `rel` into TRT_MODULES: `mod.f(...)` through an imported
    module alias, `f(...)` imported by name, or an unqualified call to a function of the same module."""
    tree = ast.parse((ROOT / rel).read_text())
    own = next((m for m, r in TRT_MODULES.items() if r == rel), None)
    names: dict[str, tuple[str, str]] = {}
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in TRT_MODULES:
                    aliases[a.asname or a.name] = full
                elif node.module in TRT_MODULES:
                    names[a.asname or a.name] = (node.module, a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in TRT_MODULES and a.asname:
                    aliases[a.asname] = a.name
    if own:
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.setdefault(node.name, (own, node.name))
    sites = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in aliases:
            sites.append((node.lineno, aliases[f.value.id], f.attr, node))
        elif isinstance(f, ast.Name) and f.id in names:
            sites.append((node.lineno, *names[f.id], node))
    return sites


def bind(sig: inspect.Signature, call: ast.Call) -> None:
    """Bind the call's arguments (placeholders) to `sig`; TypeError when they do not fit. Calls that spread
    *args/**kwargs are only checked for unknown keywords."""
    spread = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
    kwargs = {k.arg: k for k in call.keywords if k.arg is not None}
    if spread:
        accepts_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        unknown = set(kwargs) - set(sig.parameters)
        if unknown and not accepts_any:
            raise TypeError(f"unexpected keyword(s) {sorted(unknown)}")
        return
    sig.bind(*call.args, **kwargs)


def all_sites() -> list[tuple[str, int, str, str, ast.Call]]:
    return [(rel, *site) for rel in CALLERS for site in call_sites(rel)]


def test_every_call_into_the_tensorrt_modules_binds():
    sigs = callee_signatures()
    sites = all_sites()
    failures = []
    for rel, line, module, name, call in sites:
        if (module, name) not in sigs:
            failures.append(f"{rel}:{line}: {module}.{name} does not exist")
            continue
        try:
            bind(sigs[module, name], call)
        except TypeError as exc:
            failures.append(f"{rel}:{line}: {module}.{name}(...): {exc}")
    assert not failures, "\n".join(failures)
    # the check covers the call sites that matter, not an empty set
    called = {(m, n) for _, _, m, n, _ in sites}
    for target in [
        ("edge_vsd.export.tensorrt_build", "build_engine"),
        ("edge_vsd.export.tensorrt_build", "trtexec_command"),
        ("edge_vsd.benchmarks.trt_timing", "gpu_times"),
        ("edge_vsd.benchmarks.trt_timing", "check_input_shape"),
        ("edge_vsd.runtimes.cuda_device", "PinnedBuffer"),
        ("edge_vsd.runtimes.trt_support", "import_tensorrt"),
    ]:
        assert target in called, target


def test_binding_catches_the_missing_argument_the_review_found():
    """The pre-fix call (5 arguments) against the pre-fix signature (timing_cache required) fails to bind."""
    old = ast.parse(
        "def build_engine(onnx_path, engine_path, precision, image_size, batch, timing_cache): ..."
    ).body[0]
    call = ast.parse("build_engine(a, b, c, d, e)").body[0].value  # type: ignore[attr-defined]
    assert isinstance(old, ast.FunctionDef) and isinstance(call, ast.Call)
    with pytest.raises(TypeError, match="timing_cache"):
        bind(_signature(old, drop_self=False), call)


def test_importable_callees_agree_with_the_source_signatures():
    """Where a module imports here, inspect.signature of the live object is the one read from its source."""
    import importlib

    sigs = callee_signatures()
    checked = 0
    for module in TRT_MODULES:
        try:
            mod = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - runtimes.tensorrt / cuda_device need TensorRT / cuda-python
            continue
        for (m, name), sig in sigs.items():
            if m == module and callable(getattr(mod, name, None)):
                live = inspect.signature(getattr(mod, name))
                assert list(live.parameters) == list(sig.parameters), (module, name)
                checked += 1
    assert checked >= 10


def _stub_members() -> dict[str, set[str]]:
    tree = ast.parse((ROOT / "stubs/tensorrt/__init__.pyi").read_text())
    return {
        c.name: {
            n.name for n in c.body if isinstance(n, (ast.FunctionDef, ast.AnnAssign)) and hasattr(n, "name")
        }
        | {n.target.id for n in c.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        for c in tree.body
        if isinstance(c, ast.ClassDef)
    }


@pytest.mark.tensorrt
def test_tensorrt_stub_matches_installed_tensorrt():
    """The stubs mypy checks our calls against name only members the installed TensorRT has."""
    trt = pytest.importorskip("tensorrt", reason="needs TensorRT (JetPack 6 or pip install tensorrt)")
    missing = [
        f"{cls}.{member}"
        for cls, members in _stub_members().items()
        for member in members
        if hasattr(trt, cls) and not member.startswith("_") and not hasattr(getattr(trt, cls), member)
    ]
    assert not missing, missing


def _cudart_or_skip():
    try:
        from cuda.bindings import runtime
    except ImportError:
        pytest.skip("needs cuda-python (pip install 'cuda-python>=12.2,<13'; no GPU needed)")
    return runtime


def _cuda_calls(rel: str) -> list[tuple[int, str, ast.Call]]:
    """Calls `cudart.f(...)` / `rt.f(...)` (the names the CUDA modules import the runtime bindings as)."""
    return [
        (node.lineno, node.func.attr, node)
        for node in ast.walk(ast.parse((ROOT / rel).read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("cudart", "rt")
        and node.func.attr.startswith("cuda")
    ]


def test_cuda_calls_bind_to_the_real_cuda_python():
    """Every cuda-python call of the CUDA modules binds to the installed binding's own signature (cuda-python
    imports without a GPU or driver), and the stubs mypy uses agree with it."""
    runtime = _cudart_or_skip()
    failures, n = [], 0
    for rel in (
        "runtimes/cuda_device.py",
        "runtimes/trt_support.py",
        "runtimes/doctor.py",
        "benchmarks/trt_timing.py",
    ):
        for line, name, call in _cuda_calls(rel):
            n += 1
            try:
                bind(inspect.signature(getattr(runtime, name)), call)
            except (AttributeError, TypeError) as exc:
                failures.append(f"{rel}:{line}: {name}: {exc}")
    assert not failures, "\n".join(failures)
    assert n >= 15
    stub = ast.parse((ROOT / "stubs/cuda/bindings/runtime.pyi").read_text())
    for fn in (f for f in stub.body if isinstance(f, ast.FunctionDef)):
        real = inspect.signature(getattr(runtime, fn.name))
        stubbed = _signature(fn, drop_self=False)
        assert list(real.parameters) == list(stubbed.parameters), fn.name
        required = [p for p in real.parameters.values() if p.default is inspect.Parameter.empty]
        assert len(required) == len([p for p in stubbed.parameters.values() if p.default is p.empty]), fn.name
