"""/dev/shm for model servers and training workers: an in-memory emptyDir with a size limit.

The container runtime's default /dev/shm is 64Mi; NCCL and multi-process data loaders need far more.
GPU pods get the operator configuration's default (defaults.gpuSharedMemory) unless the spec sets
resources.sharedMemory; CPU pods get none unless set; "0" turns it off.

Accounting: a medium=Memory emptyDir is tmpfs, and its pages are charged to the pod's memory cgroup.
So when resources.memory is set, the container's memory request and limit are memory + sharedMemory
(the server keeps the memory it asked for, and filling /dev/shm cannot OOM-kill it early). Without
resources.memory the pod has no memory limit; its request is the shared memory size, so the scheduler
still reserves what /dev/shm may hold.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..api.common import Resources
from ..config import OperatorConfig

SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"

_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1, "k": 10 ** 3, "M": 10 ** 6,
            "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}


def quantity_value(q: str | int) -> Decimal:
    """'16Gi' -> 17179869184; '1e3' -> 1000. The value already matched the API's quantity pattern."""
    s = str(q)
    for suffix, factor in _BINARY.items():
        if s.endswith(suffix):
            return Decimal(s[: -len(suffix)]) * factor
    if s[-1:] in _DECIMAL and s[-1:] not in "0123456789.":
        return Decimal(s[:-1]) * _DECIMAL[s[-1]]
    return Decimal(s)


def format_bytes(value: Decimal) -> str:
    """Bytes as the largest binary unit that divides them exactly (17179869184 -> 16Gi)."""
    n = int(value.to_integral_value(rounding="ROUND_CEILING"))
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if n and n % _BINARY[suffix] == 0:
            return f"{n // _BINARY[suffix]}{suffix}"
    return str(n)


def shared_memory_size(resources: Resources | None, config: OperatorConfig) -> str | None:
    """The /dev/shm size of this pod, or None for the container default."""
    explicit = resources.shared_memory if resources else None
    if explicit is not None:
        return None if quantity_value(explicit) == 0 else str(explicit)
    if resources is not None and resources.gpu is not None:
        default = config.defaults.gpu_shared_memory
        return None if quantity_value(default) == 0 else default
    return None


def shm_volume(size: str) -> dict[str, Any]:
    return {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": size}}


def shm_mount() -> dict[str, Any]:
    return {"name": SHM_VOLUME, "mountPath": SHM_PATH}


def with_shared_memory(container_resources: dict[str, Any], size: str | None) -> dict[str, Any]:
    """Container resources with the shared memory counted in (see the module docstring)."""
    if size is None:
        return container_resources
    out = {k: dict(v) for k, v in container_resources.items()}
    requests = out.setdefault("requests", {})
    limits = out.get("limits", {})
    if "memory" in limits:
        total = format_bytes(quantity_value(limits["memory"]) + quantity_value(size))
        requests["memory"] = limits["memory"] = total
    elif "memory" in requests:
        requests["memory"] = format_bytes(quantity_value(requests["memory"]) + quantity_value(size))
    else:
        requests["memory"] = size
    return out


def apply_shared_memory(pod: dict[str, Any], size: str | None, container_names: tuple[str, ...]) -> None:
    """Add the /dev/shm volume to a pod spec and mount it in the named containers (their resources counted)."""
    if size is None:
        return
    pod.setdefault("volumes", []).append(shm_volume(size))
    for container in pod["containers"]:
        if container["name"] in container_names:
            container.setdefault("volumeMounts", []).append(shm_mount())
            container["resources"] = with_shared_memory(container.get("resources", {}), size)
