"""Name → class (or factory function) registries: ``MODELS``, ``DATASETS``, ``POSTFUNCS``.

Usage::

    from IMDLBenCo.registry import MODELS

    @MODELS.register_module()
    class MyModel(nn.Module):
        ...

    MODELS.get("MyModel")          # the class
    "MyModel" in MODELS            # True / False, never raises
    MODELS.list("*vit*")           # sorted names matching a shell-style pattern

Built-in entries live in modules that are heavy to import (timm, the model zoo). A registry
therefore knows the packages that hold its built-in entries (``lazy_packages``) and imports
them the first time a name is missed, listed or counted, so ``import IMDLBenCo`` stays fast
while ``MODELS.get("IML_ViT")`` still works without any import by the user.
"""

from __future__ import annotations

import builtins
import difflib
import fnmatch
import importlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

logger = logging.getLogger(__name__)

__all__ = ["Registry", "MODELS", "DATASETS", "POSTFUNCS"]


class Registry:
    """A table of callables addressed by name.

    Args:
        name: shown in messages (``"MODELS"``).
        fallback_packages: dotted module names imported only when a name is still missing (the
            demo's DemoNet: found by ``get("DemoNet")``, e.g. from a checkpoint, without being imported up front),
        lazy_packages: dotted module names imported on the first miss, listing or count,
            so that the built-in entries they register become visible.
    """

    def __init__(self, name: str, lazy_packages: Sequence[str] = (), fallback_packages: Sequence[str] = ()) -> None:
        self._name = name
        self._module_dict: dict[str, Callable] = {}
        self._lazy_packages: list[str] = list(lazy_packages)
        self._lazy_loaded = False
        self._fallback_packages: list[str] = list(fallback_packages)

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self._name

    @property
    def module_dict(self) -> dict[str, Callable]:
        self._load_lazy()
        return dict(self._module_dict)

    def __len__(self) -> int:
        self._load_lazy()
        return len(self._module_dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._module_dict:
            return True
        self._load_lazy()
        return name in self._module_dict

    def __repr__(self) -> str:
        names = self.list()
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        return f"Registry(name={self._name!r}, {len(names)} entries: {shown})"

    # ------------------------------------------------------------------ lazy import
    def add_lazy_package(self, dotted: str) -> None:
        """Import ``dotted`` on the next miss (plug-in packages can use this)."""
        if dotted not in self._lazy_packages:
            self._lazy_packages.append(dotted)
            self._lazy_loaded = False

    def _load_lazy(self) -> None:
        if self._lazy_loaded:
            return
        self._lazy_loaded = True
        for dotted in self._lazy_packages:
            try:
                importlib.import_module(dotted)
            except ModuleNotFoundError as err:
                # Only a missing lazy package itself is tolerated (a plug-in that is not
                # installed); a missing dependency inside it is a real error and propagates.
                if err.name is None or not (dotted == err.name or dotted.startswith(err.name + ".")):
                    raise
                logger.debug("registry %s: %s is not installed", self._name, dotted)

    # ------------------------------------------------------------------ registration
    def register_module(
        self,
        name: None | str | Sequence[str] = None,
        force: bool = False,
        module: Callable | None = None,
    ):
        """Register ``module`` under ``name`` (default: its ``__name__``).

        Works as a decorator (``@REG.register_module()``, ``@REG.register_module("Alias")``)
        or as a call (``REG.register_module(module=Cls)``). ``name`` may be a list of aliases.
        A name that is taken raises ``KeyError`` unless ``force=True``.
        """
        if not isinstance(force, bool):
            raise TypeError(f"{self._name}.register_module: force must be a bool, got {type(force).__name__}")
        if name is not None and not isinstance(name, str):
            if not (isinstance(name, (list, tuple)) and all(isinstance(n, str) for n in name)):
                raise TypeError(
                    f"{self._name}.register_module: name must be None, a str or a list of str, "
                    f"got {name!r}"
                )

        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(obj: Callable) -> Callable:
            self._register(obj, name, force)
            return obj

        return decorator

    def _register(self, module: Callable, name, force: bool) -> None:
        if not callable(module):
            raise TypeError(f"{self._name}: only classes and functions can be registered, got {module!r}")
        names: list[str]
        if name is None:
            names = [module.__name__]
        elif isinstance(name, str):
            names = [name]
        else:
            names = list(name)
        for key in names:
            existing = self._module_dict.get(key)
            if existing is not None and existing is not module and not force:
                where = getattr(existing, "__module__", "?")
                raise KeyError(
                    f"{key!r} is already registered in {self._name} (by {where}.{existing.__qualname__}); "
                    f"choose another name or pass force=True to replace it"
                )
            self._module_dict[key] = module

    # ------------------------------------------------------------------ look-up
    def get(self, name: str) -> Callable:
        """Return the entry registered as ``name``; a miss names the closest registered names."""
        if name in self._module_dict:
            return self._module_dict[name]
        self._load_lazy()
        if name in self._module_dict:
            return self._module_dict[name]
        for dotted in self._fallback_packages:  # entries kept out of list() but found by name
            importlib.import_module(dotted)
            if name in self._module_dict:
                return self._module_dict[name]
        raise KeyError(self._miss_message(name))

    def get_lower(self, name: str) -> Callable:
        """Case-insensitive ``get`` (used for post-functions such as ``cat_net_post_func``)."""
        if name in self:
            return self.get(name)
        lowered = {k.lower(): v for k, v in self._module_dict.items()}
        if name.lower() in lowered:
            return lowered[name.lower()]
        raise KeyError(self._miss_message(name))

    def has(self, name: str) -> bool:
        return name in self

    def build(self, name: str, *args, **kwargs):
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str | None = None) -> builtins.list[str]:
        """Sorted registered names, optionally filtered by a shell-style wildcard (``*vit*``)."""
        self._load_lazy()
        names = sorted(self._module_dict)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def items(self) -> Iterable:
        self._load_lazy()
        return sorted(self._module_dict.items())

    def _miss_message(self, name: str) -> str:
        names = list(self._module_dict)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        if not close:
            by_case = [n for n in names if n.lower() == str(name).lower()]
            close = by_case
        if close:
            hint = "Did you mean " + " or ".join(f'"{c}"' for c in close) + "?"
        else:
            hint = "No similar name is registered."
        return (
            f'"{name}" is not registered in {self._name}. {hint} '
            f"({len(names)} names are registered; list them with {self._name}.list(). "
            f"{'A model of your own must be imported before it is looked up: `from mymodel import MyModel` in a script, `--import mymodel` for benco predict and benco cam.' if self._name == 'MODELS' else 'A class of your own must be imported before it is looked up.'})"
        )


# the demo's DemoNet is not listed among the models, but found by name (a demo checkpoint names it)
MODELS = Registry("MODELS", lazy_packages=["IMDLBenCo.modules", "IMDLBenCo.model_zoo"],
                  fallback_packages=["IMDLBenCo.demo.model"])
DATASETS = Registry("DATASETS", lazy_packages=["IMDLBenCo.datasets"])
POSTFUNCS = Registry("POSTFUNCS", lazy_packages=["IMDLBenCo.model_zoo"])
