"""papermill's command line with the notebook kernel on local IPC sockets instead of TCP ports (`make figures`).

A kernel started over TCP listens on 127.0.0.1 and ipykernel prints "Kernel is running over TCP without
encryption" into every run, a warning a reader cannot act on. Over IPC the kernel and papermill talk through socket
files beside the kernel's connection file (Jupyter's runtime folder): nothing listens on the network and there is
nothing to warn about. Usage, the same arguments as ``papermill``::

    python -m ferrolib.papermill_ipc INPUT.ipynb OUTPUT.ipynb -p name value ...
"""
from __future__ import annotations

from typing import Any

from jupyter_client.manager import AsyncKernelManager
from papermill.engines import NBClientEngine, papermill_engines
from traitlets import default

ENGINE = "ferrolib-ipc"
"""The papermill engine name this module registers (and makes the default)."""


class IPCKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels use the ``ipc`` transport (socket files) instead of ``tcp``."""

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"


class IPCEngine(NBClientEngine):
    """papermill's nbclient engine, starting its kernels through ``IPCKernelManager``."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("kernel_manager_class", IPCKernelManager)
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


def register() -> None:
    """Register ``IPCEngine`` as ``ENGINE`` and as papermill's default engine (``--engine`` still overrides it)."""
    papermill_engines.register(ENGINE, IPCEngine)
    papermill_engines.register(None, IPCEngine)


def main() -> None:
    from papermill.cli import papermill

    register()
    papermill()


if __name__ == "__main__":
    main()
