"""Verified downloads shared by the data sources (pooch with short timeouts and pinned SHA-256)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable


class ChecksumError(ValueError):
    """A downloaded file does not match its pinned SHA-256."""


def verified_download(url: str, sha256: str, target: Path, timeout_s: float, downloader: Callable | None = None) -> Path:
    """Fetch ``url`` into ``target`` unless a file with the right hash is there; check its SHA-256.

    Raises ``ChecksumError`` on a hash mismatch (the bad file is not kept) and lets network errors
    (``requests`` exceptions, ``OSError``) through so callers can try another source. ``downloader`` is a
    pooch downloader (defaults to HTTP with ``timeout_s``); tests pass an offline one.
    """
    import pooch
    import requests

    downloader = downloader or pooch.HTTPDownloader(timeout=timeout_s, progressbar=False)
    try:
        return Path(pooch.retrieve(url, f"sha256:{sha256}", fname=target.name, path=target.parent, downloader=downloader, progressbar=False))
    except requests.RequestException:
        raise
    except ValueError as error:  # pooch reports a hash mismatch as a plain ValueError
        raise ChecksumError(f"{target}: downloaded from {url} but its SHA-256 is wrong: {error}") from None
