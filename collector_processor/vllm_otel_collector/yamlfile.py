"""Reading a YAML config file with one-line errors (shared by the collector and analytics configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vllm_otel_collector.errors import UserError


def read_yaml(path: Path, what: str) -> Any:
    """Parsed content of ``path`` (``{}`` for an empty file). ``what`` names the file in errors ("config file").

    Raises ``UserError`` ("cannot read <what> <path>: ..." / "<what> <path> is not valid YAML: <first line>").
    """
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
