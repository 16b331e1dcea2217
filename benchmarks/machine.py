"""The machine a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def describe_machine() -> dict[str, Any]:
    """CPU count and model, Python version, UTC date and the load average at the start."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": os.getloadavg()[0],
    }
