"""The one date a job's chat template sees, whatever day each prompt is rendered.

Chat templates can write the date into the prompt: transformers gives every
template `strftime_now`, the local clock (Llama 3.2's template sets
`date_string` from it; Mistral Small 3.1's system message calls it). A run
that crosses midnight, a resume the next day or shards on different days
would then give the model other tokens. A job therefore fixes its date once,
when it is created (`local_today()`, so a run today renders what gpi_pack
renders today), and every render of the job happens inside
`fixed_template_clock(date)`, where `strftime_now` answers with that date at
00:00:00.

`date_string` is not passed to the template: Llama 3.1/3.3 default it to a
fixed "26 Jul 2024" that gpi_pack renders, and passing it would change the
prompts of the default model (see docs/architecture.md, the gpi_pack contract). A
template option `date_string` still reaches the template as given.

Month and day names are English whatever the system's locale (the window's
Qt sets the locale from the desktop; gpi_pack scripts run in the C locale).
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gpi_desktop.core.vocabulary.errors import ModelError, SettingsError
from gpi_desktop.core.vocabulary.hf_lock import TRANSFORMERS_LOCK

DATE_FORMAT = "YYYY-MM-DD"
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# What the C locale gives for the locale-dependent composite directives.
_C_COMPOSITES = {"c": "%a %b %e %H:%M:%S %Y", "x": "%m/%d/%y", "X": "%H:%M:%S"}
_DIRECTIVE = re.compile(r"%([-_0^#]?)([A-Za-z%])")

_FIXED: contextvars.ContextVar[_dt.date | None] = contextvars.ContextVar("gpi_template_date", default=None)
_install_lock = threading.Lock()
_outer_clock: type[_dt.datetime] = _dt.datetime  # what `strftime_now` read before ours (the real clock)


def local_today() -> _dt.date:
    """Today on this computer's clock: the date a new job gets (the one clock tests replace)."""
    return _dt.date.today()


def parse_template_date(text: str) -> _dt.date:
    """A YYYY-MM-DD date, or a SettingsError saying how to write one."""
    value = str(text).strip()
    try:
        if not _ISO.match(value):
            raise ValueError(value)
        return _dt.date.fromisoformat(value)
    except ValueError:
        raise SettingsError(
            f"The template date '{text}' is not a date written {DATE_FORMAT}, for example 2024-07-26."
        ) from None


def job_template_date(explicit: str | None) -> str:
    """The date a job created now renders with: the one set by the user, or today's (ISO text)."""
    return parse_template_date(explicit).isoformat() if explicit else local_today().isoformat()


def c_strftime(moment: _dt.datetime, fmt: str) -> str:
    """`moment.strftime(fmt)` as in the C locale (English names), independent of the system's locale."""

    def one(match: re.Match[str]) -> str:
        flag, code = match.groups()
        if code == "%":
            return "%"
        if code in _C_COMPOSITES:
            return c_strftime(moment, _C_COMPOSITES[code])
        if code == "a":
            return _DAYS[moment.weekday()][:3]
        if code == "A":
            return _DAYS[moment.weekday()]
        if code in ("b", "h"):
            return _MONTHS[moment.month - 1][:3]
        if code == "B":
            return _MONTHS[moment.month - 1]
        if code == "p":
            return "AM" if moment.hour < 12 else "PM"
        return moment.strftime(f"%{flag}{code}")

    return _DIRECTIVE.sub(one, fmt)


class _FixedMoment(_dt.datetime):
    """The job's date at midnight, formatting in the C locale."""

    def strftime(self, fmt: str) -> str:
        return c_strftime(_dt.datetime(self.year, self.month, self.day, self.hour, self.minute, self.second), fmt)


class _TemplateClock(_dt.datetime):
    """Stands in for `datetime` inside transformers' chat templates: fixed within `fixed_template_clock`."""

    @classmethod
    def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:  # type: ignore[override]
        day = _FIXED.get()
        if day is None:
            return _outer_clock.now(tz)
        return _FixedMoment(day.year, day.month, day.day, tzinfo=tz)


def _install() -> None:
    """Point transformers' template clock (`strftime_now` reads `datetime.now()` in its module) at ours."""
    global _outer_clock
    with TRANSFORMERS_LOCK:
        from transformers.utils import chat_template_utils

    with _install_lock:
        current = getattr(chat_template_utils, "datetime", None)
        if current is _TemplateClock:
            return
        if not (isinstance(current, type) and issubclass(current, _dt.datetime)):
            raise ModelError(
                "This version of transformers gives chat templates the date in a way GPI Desktop does not know, "
                "so the prompts' date could not be fixed: install the transformers version GPI Desktop names."
            )
        _outer_clock = current
        # On purpose: the module's datetime class is replaced by ours (a subclass).
        chat_template_utils.datetime = _TemplateClock  # type: ignore[misc]


@contextmanager
def fixed_template_clock(day: _dt.date | str) -> Iterator[None]:
    """Within this block (this thread only), chat templates' `strftime_now` answers with `day`."""
    if isinstance(day, str):
        day = parse_template_date(day)
    _install()
    token = _FIXED.set(day)
    try:
        yield
    finally:
        _FIXED.reset(token)
