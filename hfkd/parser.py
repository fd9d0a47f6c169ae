"""`--config file.yaml` on top of `HfArgumentParser`: the YAML sets defaults, command-line flags override them.

YAML configs are flat mappings whose keys are the flag names (`temperature: 4` is `--temperature 4`). They are read
with `yaml.safe_load`, so no executable tags. A key that no dataclass knows is an error, with the closest valid names.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Iterable
from typing import Any

import yaml
from transformers import HfArgumentParser


def load_yaml_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a flat YAML config; raises a `ValueError` naming the file for anything but a mapping of names to values."""
    if not os.path.isfile(path):
        raise ValueError(f"--config {path}: no such file. Pass the path of a YAML file such as configs/tiny.yaml.")
    with open(path, encoding="utf-8") as f:
        try:
            config = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ValueError(f"--config {path} is not valid YAML: {err}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(
            f"--config {path} must hold a flat mapping of option names to values (like `temperature: 2.0`); "
            f"it holds a {type(config).__name__}."
        )
    nested = [k for k, v in config.items() if isinstance(v, dict)]
    if nested:
        raise ValueError(
            f"--config {path}: keys {nested} hold nested mappings; configs are flat, one `name: value` per option "
            "(the names of the command-line flags)."
        )
    return config


class HfkdParser(HfArgumentParser):
    """`HfArgumentParser` that also takes `--config file.yaml`.

    Example:
    ```python
    parser = HfkdParser((DataArguments, StudentArguments, DistillationArguments))
    data_args, student_args, training_args = parser.parse_args_and_config()
    ```
    """

    def __init__(self, dataclass_types: Iterable[type] | type, **kwargs):
        super().__init__(dataclass_types, **kwargs)
        self.add_argument(
            "--config", type=str, default=None, help="YAML file whose keys are these flags; flags given here win."
        )

    def known_names(self) -> set[str]:
        return {f.name for dtype in self.dataclass_types for f in dataclasses.fields(dtype) if f.init}

    def set_defaults_from_config(self, config: dict[str, Any], source: str = "config") -> None:
        """Make every key of `config` the default of its flag (so the command line still overrides it)."""
        known = self.known_names()
        unknown = [k for k in config if k not in known]
        if unknown:
            lines = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=3)
                lines.append(f"  {key!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
            raise ValueError(
                f"{source} has keys that no option of this script knows:\n" + "\n".join(lines) + "\n"
                "Remove or rename them; `python <script> --help` lists every option."
            )
        for action in self._actions:
            if action.dest in config:
                value = config[action.dest]
                # argparse only converts string defaults; YAML reads `5e-5` as a string, `1e-4` too, so keep those.
                action.default = value
                action.required = False

    def parse_args_and_config(self, args: list[str] | None = None) -> tuple[Any, ...]:
        """Parse `args` (default: `sys.argv[1:]`), applying `--config` first. Returns one instance per dataclass."""
        args = list(sys.argv[1:] if args is None else args)
        config_path = _find_config_path(args)
        if config_path is not None:
            self.set_defaults_from_config(load_yaml_config(config_path), source=f"--config {config_path}")
        outputs = self.parse_args_into_dataclasses(args=args, return_remaining_strings=True, look_for_args_file=False)
        *dataclass_outputs, remaining = outputs
        if remaining:
            known = [f"--{n}" for n in self.known_names()]
            hints = []
            for arg in remaining:
                if arg.startswith("--"):
                    close = difflib.get_close_matches(arg.split("=")[0], known, n=3)
                    hints.append(f"  {arg}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
                else:
                    hints.append(f"  {arg}")
            self.error("unrecognized arguments:\n" + "\n".join(hints))
        # The extra namespace (holding `config`) is dropped: the dataclasses are the interface.
        return tuple(o for o in dataclass_outputs if dataclasses.is_dataclass(o))


def _find_config_path(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def config_to_dict(*dataclass_objs: Any, defaults: bool = False) -> dict[str, Any]:
    """The flat, JSON/YAML-serialisable config of a run (what a YAML config with every key would hold); with
    `defaults`, the fields' declared defaults instead of their values (fields without one are left out)."""
    flat: dict[str, Any] = {}
    for obj in dataclass_objs:
        for f in dataclasses.fields(obj):
            if not f.init or f.name.startswith("_"):
                continue
            if not defaults:
                value = getattr(obj, f.name)
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                continue
            if hasattr(value, "value"):  # enums such as IntervalStrategy
                value = value.value
            if isinstance(value, (str, int, float, bool, type(None))):
                flat[f.name] = value
            elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
                flat[f.name] = list(value)
            elif isinstance(value, dict):
                flat[f.name] = value
            else:
                flat[f.name] = str(value)
    return flat
