"""A huggingface_hub, network or disk exception in one plain sentence that says what to do."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

from gpi_desktop.core.hub.cache import hub_cache_dir
from gpi_desktop.core.hub.words import TOKENS_PAGE, model_page
from gpi_desktop.core.vocabulary.errors import AccessError, DiskFullError, GpiError, ModelError

_NETWORK_ERROR_NAMES = {
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "TimeoutException",
    "NetworkError",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "ProxyError",
    "ConnectionError",
    "Timeout",
    "SSLError",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _is_network_error(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if any(cls.__name__ in _NETWORK_ERROR_NAMES for cls in type(e).__mro__):
            return True
    return False


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@dataclass(frozen=True)
class _Request:
    """What was asked of the Hub, as the sentences name it."""

    model_id: str | None
    token_sent: bool | None
    revision: str | None

    @property
    def url(self) -> str:
        return model_page(self.model_id)

    @property
    def name(self) -> str:
        return f"'{self.model_id}'" if self.model_id else "the Hub"


def plain_hub_error(
    exc: BaseException, model_id: str | None, *, token_sent: bool | None = None, revision: str | None = None
) -> GpiError | None:
    """Turn a huggingface_hub / network / disk exception into one plain sentence.

    Returns None for an exception that is not about the Hub (our bug: the caller
    re-raises it). `token_sent` says whether a token went with the request; it
    decides between "you need a token" and "your token is not enough".
    """
    from huggingface_hub import errors as hf

    if isinstance(exc, GpiError):
        return exc
    request = _Request(model_id, token_sent, revision)
    if isinstance(exc, hf.HFValidationError):
        return ModelError(
            f"'{model_id}' is not a valid model id: write it as owner/name (for example "
            "meta-llama/Llama-3.1-8B-Instruct) or choose a model folder on this computer."
        )
    error = _refused_repository(exc, request) or _unreachable(exc, request)
    if error is None and isinstance(exc, hf.HfHubHTTPError):
        error = _http_error(_status(exc), request)
    if error is None and isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        error = DiskFullError(
            f"The disk that holds the Hugging Face cache ({hub_cache_dir()}) is full: free some space and try "
            "again; the part already downloaded is kept."
        )
    return error


def _refused_repository(exc: BaseException, request: _Request) -> GpiError | None:
    """The Hub's named refusals: a gated model, a revision, repository or file that is not there."""
    from huggingface_hub import errors as hf

    name, url = request.name, request.url
    if isinstance(exc, hf.GatedRepoError):
        if _status(exc) == 401 or request.token_sent is False:
            return AccessError(
                f"{name} is a gated model and needs a Hugging Face token: accept its licence at {url}, create a "
                f"'Read' token at {TOKENS_PAGE}, save it under Hugging Face access (or run 'gpi-desktop token "
                "set'), and try again.",
                kind="no-token",
                url=url,
            )
        return AccessError(
            f"Your Hugging Face account has not been given access to {name} yet: open {url}, log in, accept the "
            "licence (the owners may take a while to approve it), then try again.",
            kind="gated",
            url=url,
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return ModelError(
            f"{name} has no revision '{request.revision or 'main'}': check the branch, tag or commit at "
            f"{url}/tree/main and try again."
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        if request.token_sent:
            return AccessError(
                f"No model {name} can be seen with your token at {url}: check the spelling, and if it is a "
                "private model ask its owner to give your account access.",
                kind="not-found",
                url=url,
            )
        return AccessError(
            f"No model {name} was found at {url}: check the spelling; if it is a private model, save a Hugging "
            f"Face token that can read it ({TOKENS_PAGE}) and try again.",
            kind="not-found",
            url=url,
        )
    entry_not_found = getattr(hf, "RemoteEntryNotFoundError", None) or hf.EntryNotFoundError
    if isinstance(exc, entry_not_found):
        return ModelError(f"A file that {name} lists is missing on the Hub; try again later or see {url}.")
    return None


def _unreachable(exc: BaseException, request: _Request) -> GpiError | None:
    """Offline mode, or the Hub not reached; an offline error with an HTTP answer behind it is that answer."""
    from huggingface_hub import errors as hf

    offline_errors = tuple(
        c
        for c in (
            getattr(hf, "OfflineModeIsEnabled", None),
            getattr(hf, "LocalEntryNotFoundError", None),
            getattr(hf, "IncompleteSnapshotError", None),
        )
        if c is not None
    )
    if isinstance(exc, offline_errors) and not offline_mode():
        # hf_hub_download reports any failed HEAD as "cannot find it locally"; an HTTP answer behind it means the
        # Hub was reached and said no, which is not a connection problem.
        answered = next(
            (e for e in _chain(exc) if e is not exc and isinstance(e, hf.HfHubHTTPError) and _status(e) is not None),
            None,
        )
        if answered is not None:
            return plain_hub_error(answered, request.model_id, token_sent=request.token_sent, revision=request.revision)
    if not (isinstance(exc, offline_errors) or _is_network_error(exc)):
        return None
    name, url = request.name, request.url
    if offline_mode():
        return AccessError(
            f"Offline mode is on (HF_HUB_OFFLINE=1) and {name} is not fully downloaded on this computer: "
            f"turn offline mode off and connect to the internet to download it from {url}.",
            kind="offline",
            url=url,
        )
    return AccessError(
        f"Could not reach the Hugging Face Hub to get {name}: check the internet connection (and proxy "
        f"settings) and try again; the model page is {url}.",
        kind="offline",
        url=url,
    )


def _http_error(status: int | None, request: _Request) -> AccessError:
    """Any other HTTP answer of the Hub, by its status."""
    name, url = request.name, request.url
    if status == 401:
        if request.token_sent is False:
            return AccessError(
                f"{name} needs a Hugging Face token: create a 'Read' token at {TOKENS_PAGE}, save it under "
                f"Hugging Face access, and try again ({url}).",
                kind="no-token",
                url=url,
            )
        return AccessError(
            f"The Hugging Face Hub refused your token (it is wrong, expired or was deleted): create a new one "
            f"at {TOKENS_PAGE}, save it under Hugging Face access, and try {url} again.",
            kind="invalid-token",
            url=url,
        )
    if status == 403:
        return AccessError(
            f"Your token does not have permission to read {name}: use a 'Read' token, or give your "
            "fine-grained token 'Read access to contents of all public gated repos you can access' at "
            f"{TOKENS_PAGE}, then try again ({url}).",
            kind="forbidden",
            url=url,
        )
    if status == 404:
        return AccessError(
            f"No model {name} was found at {url}: check the spelling, and if it is a private model, save a "
            "Hugging Face token that can read it.",
            kind="not-found",
            url=url,
        )
    if status == 429:
        return AccessError(
            f"The Hugging Face Hub is limiting requests right now: wait a few minutes and try {name} again.",
            kind="server",
            url=url,
        )
    return AccessError(
        f"The Hugging Face Hub answered with an error (HTTP {status}) for {name}: try again in a few minutes; "
        f"the model page is {url}.",
        kind="server",
        url=url,
    )


def raise_plain(exc: BaseException, model_id: str | None, token: str | None, revision: str | None = None) -> NoReturn:
    error = plain_hub_error(exc, model_id, token_sent=bool(token), revision=revision)
    if error is None or error is exc:
        raise exc
    raise error from None  # the hub's own message may quote request headers; never chain it to the user


def offline_miss_error(model_id: str) -> AccessError:
    url = model_page(model_id)
    return AccessError(
        f"Offline mode is on (HF_HUB_OFFLINE=1) and {model_id} is not fully downloaded on this computer: turn "
        f"offline mode off and connect to the internet to download it from {url}.",
        kind="offline",
        url=url,
    )
