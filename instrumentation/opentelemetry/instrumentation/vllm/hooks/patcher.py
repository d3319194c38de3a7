"""Apply and undo patches lazily: each patch waits for its vLLM module to be imported (wrapt post-import hooks), so
``instrument()`` in a process that never imports vLLM (e.g. a compile worker under ``opentelemetry-instrument``)
costs nothing, and a process that imports vLLM later is still covered.

Every patch names its feature (:mod:`..compat`). Before a feature's patch is applied, what the feature relies on in
the live vLLM is checked (:func:`..compat.live_problems`); when something is missing or changed, none of that
feature's patches is applied (those applied already are undone), one warning says what was skipped and why, and the
skip is counted (``vllm_otel.instrumentation.errors``, ``hook=compat``); vLLM runs untouched by that feature.
``OTEL_INSTRUMENTATION_VLLM_FORCE=true`` applies the patches anyway (each still guarded: a target that does not
resolve is skipped and counted).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from opentelemetry.instrumentation.vllm import compat
from opentelemetry.instrumentation.vllm.safety import logger, report_hook_error
from opentelemetry.instrumentation.vllm.settings import ENV_FORCE, env_flag


def arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    """A wrapped call's argument by position ``index`` or keyword ``name`` (vLLM calls both ways)."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _resolve(module: Any, dotted: str) -> tuple[Any, str]:
    owner = module
    *path, attr = dotted.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attr


class Patcher:
    """Registry of the patches of one ``instrument()`` generation.

    ``wrap(module, "Class.method", wrapper)`` — wrapt function wrapper ``wrapper(wrapped, instance, args, kwargs)``;
    ``replace(module, "Class.method", factory)`` — ``setattr`` of ``factory(original)`` (for re-decorating functions
    that vLLM's ``@instrument`` already wraps). ``restore()`` puts every original back; hooks registered before a
    ``restore()`` never fire afterwards. A (owner, attribute) pair is patched at most once per generation.
    """

    _generation = 0

    def __init__(self) -> None:
        Patcher._generation += 1
        self._gen = Patcher._generation
        self._wrapped: list[tuple[Any, str, str | None]] = []
        self._replaced: list[tuple[Any, str, Any, str | None]] = []
        self._seen: set[tuple[int, str]] = set()
        self._force = env_flag(ENV_FORCE, False)
        self.skipped: dict[str, list[str]] = {}  # features left out (warned once each)
        self.active = True
        compat.forget()  # this generation checks the live vLLM afresh

    def wrap(self, module_name: str, dotted: str, wrapper: Callable[..., Any], feature: str | None = None) -> None:
        def apply(module: Any) -> None:
            owner, attr = _resolve(module, dotted)
            if self._claim(owner, attr):
                wrapt.wrap_function_wrapper(owner, attr, wrapper)
                self._wrapped.append((owner, attr, feature))

        self._on_import(module_name, dotted, apply, feature)

    def replace(self, module_name: str, dotted: str, factory: Callable[[Any], Any],
                feature: str | None = None) -> None:
        def apply(module: Any) -> None:
            owner, attr = _resolve(module, dotted)
            if self._claim(owner, attr):
                original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
                setattr(owner, attr, factory(original))
                self._replaced.append((owner, attr, original, feature))

        self._on_import(module_name, dotted, apply, feature)

    def _claim(self, owner: Any, attr: str) -> bool:
        key = (id(owner), attr)
        if not self.active or key in self._seen:
            return False
        self._seen.add(key)
        return True

    def _on_import(self, module_name: str, dotted: str, apply: Callable[[Any], None], feature: str | None) -> None:
        gen = self._gen

        @functools.wraps(apply)
        def hook(module: Any) -> None:
            if not self.active or gen != self._gen:
                return
            if feature is not None and not compat.live_applies(feature):
                return  # this vLLM has no such path: nothing to patch
            if feature is not None and not self._force:
                if feature in self.skipped:
                    return
                problems = compat.live_problems(feature)
                if problems:
                    self._skip(feature, problems)
                    return
            try:
                apply(module)
            except Exception as exc:  # noqa: BLE001 - a vLLM version without this surface: skip it
                report_hook_error(f"patch:{module_name}.{dotted}", exc)

        wrapt.register_post_import_hook(hook, module_name)

    def _skip(self, feature: str, problems: list[str]) -> None:
        """Leave ``feature`` out: undo its patches applied so far, warn once, count once."""
        self.skipped[feature] = problems
        for owner, attr, feat in [w for w in self._wrapped if w[2] == feature]:
            self._unwrap(owner, attr)
            self._wrapped.remove((owner, attr, feat))
        for entry in [r for r in self._replaced if r[3] == feature]:
            setattr(entry[0], entry[1], entry[2])
            self._replaced.remove(entry)
        compat.report_skip(feature, problems)

    @staticmethod
    def _unwrap(owner: Any, attr: str) -> None:
        try:
            unwrap(owner, attr)
        except Exception:  # noqa: BLE001
            logger.debug("could not unwrap %s.%s", owner, attr, exc_info=True)

    def restore(self) -> None:
        """Undo every patch (idempotent)."""
        self.active = False
        for owner, attr, _ in reversed(self._wrapped):
            self._unwrap(owner, attr)
        for owner, attr, original, _ in reversed(self._replaced):
            setattr(owner, attr, original)
        self._wrapped.clear()
        self._replaced.clear()
        self._seen.clear()
