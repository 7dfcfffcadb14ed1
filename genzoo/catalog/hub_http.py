"""Bounded HTTP to the Hugging Face Hub: ``GENZOO_HUB_TIMEOUT``, ``HF_ENDPOINT`` checked, the
repository lookup that starts every download, and a huggingface_hub client that never waits
forever. ``genzoo.catalog.hub`` uses these; nothing here imports huggingface_hub until it is needed.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from genzoo.errors import GenzooError, HubError

__all__ = ["DEFAULT_HUB_TIMEOUT", "hub_timeout", "checked_endpoint", "probe_repo", "ask_repo",
           "bound_hub_client", "hub_errors", "hub_offline"]

#: Seconds, when ``GENZOO_HUB_TIMEOUT`` is not set.
DEFAULT_HUB_TIMEOUT = 20.0


def hub_timeout() -> float:
    """``GENZOO_HUB_TIMEOUT`` in seconds (default 20): the longest genzoo waits for the Hub to
    connect or to send the next bytes, and the deadline of a download's repository lookup,
    retries included. A value that is not a positive number is a one-line HubError."""
    raw = os.environ.get("GENZOO_HUB_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_HUB_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise HubError(f"GENZOO_HUB_TIMEOUT={raw!r}: expected a number of seconds above 0")
    return value


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for the local cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def checked_endpoint() -> str | None:
    """``HF_ENDPOINT`` checked (scheme, host, port), or None for the default Hub."""
    from urllib.parse import urlsplit
    raw = os.environ.get("HF_ENDPOINT") or None
    if raw is None:
        return None
    url = urlsplit(raw)
    try:
        port_ok = url.port != 0
    except ValueError:  # "Port out of range", "Port could not be cast to integer"
        port_ok = False
    if url.scheme not in ("http", "https") or not url.hostname or not port_ok:
        raise HubError(f"HF_ENDPOINT={raw!r} is not a usable URL (scheme, host or port); set it "
                       "to https://huggingface.co or to your mirror's http(s)://host[:port]")
    return raw.rstrip("/")


#: HTTP 5xx/429 answers to the repository lookup are retried this many times in all.
_PROBE_TRIES = 3


def probe_repo(endpoint: str, repo_id: str, rev: str, where: str) -> str | None:
    """Ask the Hub about ``repo_id`` at ``rev`` within ``hub_timeout()`` seconds in all.

    Returns None when it answered with the repository, or why it could not be reached (the
    caller then tries the local cache). An HTTP answer that is not the repository (404,
    401/403, 5xx after ``_PROBE_TRIES`` tries, a 200 page that is not JSON) is a HubError."""
    return ask_repo(endpoint, repo_id, rev, where)[1]


def ask_repo(endpoint: str, repo_id: str, rev: str,
             where: str) -> tuple[dict | None, str | None]:
    """``probe_repo`` that keeps the answer: ``(the Hub's JSON about the repository at rev,
    whose "sha" is the commit rev resolves to, None)``, or ``(None, why it could not be
    reached)``; the same bounds and the same HubErrors."""
    import json
    import time
    import urllib.error
    import urllib.request
    from urllib.parse import quote
    limit = hub_timeout()
    deadline = time.monotonic() + limit
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(rev, safe='')}"
    request = urllib.request.Request(url, headers={**_auth_header(), "User-Agent": "genzoo"})
    status, tries, started = 0, 0, time.monotonic()
    while tries < _PROBE_TRIES and time.monotonic() < deadline:
        tries, code = tries + 1, ""
        try:
            with urllib.request.urlopen(request, timeout=max(0.1, deadline - time.monotonic())
                                        ) as answer:
                status, body = answer.status, _read_within(answer, deadline)
        except urllib.error.HTTPError as e:
            status, body = e.code, b""
            code = e.headers.get("X-Error-Code", "") if e.headers else ""
        except (TimeoutError, urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                return None, f"no answer from {endpoint} within {limit:g} s (GENZOO_HUB_TIMEOUT)"
            return None, f"cannot connect to {endpoint}: {reason}"
        if status == 200:
            try:
                info = json.loads(body)
                if isinstance(info, dict):
                    return info, None
            except ValueError:
                pass
            kind = "an HTML page" if body.lstrip()[:1] == b"<" else "something that is not JSON"
            raise HubError(f"{where}: {endpoint} answered HTTP 200 with {kind}, not the Hub's "
                           "API; check HF_ENDPOINT (a login page or a proxy?)")
        if code == "RevisionNotFound":
            raise HubError(f"{where}: revision {rev!r} not found in the repository on "
                           f"{endpoint} (HTTP {status})")
        if code == "RepoNotFound" or status in (401, 404):  # the Hub says 401 for both
            raise HubError(f"{where}: repository not found on {endpoint} (HTTP {status}); if "
                           "it is private, log in with `hf auth login`")
        if code == "GatedRepo" or status == 403:
            raise HubError(f"{where}: HTTP {status} from {endpoint}: the repository is gated; "
                           "accept its terms on the Hub and log in with `hf auth login`")
        if status != 429 and status < 500:
            raise HubError(f"{where}: {endpoint} answered HTTP {status}")
        time.sleep(min(0.5 * 2 ** (tries - 1), max(0.0, deadline - time.monotonic())))
    if not status:
        return None, f"no answer from {endpoint} within {limit:g} s (GENZOO_HUB_TIMEOUT)"
    raise HubError(f"{where}: {endpoint} answered HTTP {status} (a server error) {tries} time(s) "
                   f"in {time.monotonic() - started:.1f} s; the Hub has a problem, try again later")


def _read_within(answer, deadline: float, cap: int = 4 << 20) -> bytes:
    """The body of ``answer``, read until ``deadline`` (a drip-feeding server is cut off)."""
    import time
    chunks, size = [], 0
    while size < cap:
        if time.monotonic() > deadline:
            raise TimeoutError("timed out reading the answer")
        chunk = answer.read1(65536) if hasattr(answer, "read1") else answer.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _auth_header() -> dict[str, str]:
    """The user's Hub token as huggingface_hub finds it (HF_TOKEN, ``hf auth login``)."""
    try:
        from huggingface_hub import get_token
        token = get_token()
    except Exception:  # noqa: BLE001 - no token is an anonymous request, not an error
        token = None
    return {"Authorization": f"Bearer {token}"} if token else {}


_BOUNDED = False


def bound_hub_client() -> None:
    """Make huggingface_hub's HTTP client give up on a connect or a read after
    ``hub_timeout()`` seconds (it waits forever by default). Installed once, and only over
    huggingface_hub's own default factory: a factory the user set is left alone."""
    global _BOUNDED
    if _BOUNDED:
        return
    _BOUNDED = True
    try:  # huggingface_hub 2.x speaks httpx2; an older or newer layout is left as it is
        import httpx2
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils import _http
        default = _http.default_client_factory
        if getattr(_http, "_GLOBAL_CLIENT_FACTORY", default) is not default:
            return  # the user's own factory
    except (ImportError, AttributeError):
        return

    class _StallBounded(httpx2.HTTPTransport):
        def handle_request(self, request):
            limit = hub_timeout()
            asked = request.extensions.get("timeout") or {}
            request.extensions["timeout"] = {
                k: limit if asked.get(k) is None else min(asked[k], limit)
                for k in ("connect", "read", "write", "pool")}
            return super().handle_request(request)

    def factory():
        base = default()  # its event hooks (auth, headers) are kept
        hooks = base.event_hooks
        base.close()
        return httpx2.Client(event_hooks=hooks, follow_redirects=True, timeout=None,
                             transport=_StallBounded())

    set_client_factory(factory)


@contextlib.contextmanager
def hub_errors(where: str, rev: str | None, endpoint: str | None,
               not_cached: str) -> Iterator[None]:
    """Turn what a huggingface_hub call raises into one-line HubErrors naming ``where`` (the
    repository, at ``rev``) and, where there was one, the HTTP status. ``not_cached`` ends the
    message of a file that is neither in the cache nor reachable (what the user can do)."""
    from huggingface_hub import errors as hf_errors
    try:
        yield
    except hf_errors.LocalEntryNotFoundError:
        raise HubError(f"{where}: not in the local cache and the Hub is unreachable; "
                       f"{not_cached}") from None
    except hf_errors.GatedRepoError:
        raise HubError(f"{where}: the repository is gated; accept its terms on the Hub and log "
                       "in with `hf auth login`") from None
    except hf_errors.RevisionNotFoundError:
        raise HubError(f"{where}: revision {rev!r} not found in the repository") from None
    except hf_errors.RepositoryNotFoundError:
        raise HubError(f"{where}: repository or revision not found on "
                       f"{endpoint or 'huggingface.co'} (private? log in with `hf auth login`)"
                       ) from None
    except Exception as e:  # noqa: BLE001 - HTTP, OS and httpx errors alike: one line
        if isinstance(e, GenzooError):
            raise
        status = getattr(getattr(e, "response", None), "status_code", None)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise HubError(f"{where}: download failed ({f'HTTP {status}: ' if status else ''}"
                       f"{type(e).__name__}: {first[:200]})") from None
