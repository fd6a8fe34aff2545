"""datetime's types, without importing the `datetime` module on Python 3.11.

Why: 3.11's `datetime` module defines its whole pure-Python implementation (~2,600 lines of
classes) and then replaces it with the C accelerator (`from _datetime import *`): importing it
costs ~4 M instructions, about 2 % of `appban check --source dpkg`, for classes it throws away
(issue 14). The types are the same objects either way (`datetime.datetime is
_datetime.datetime`); 3.12 imports the accelerator first, and a Python without it gets the
module's own classes. The modules on a check's path take these names from here.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import date, datetime, timedelta, timezone
else:
    try:
        from _datetime import date, datetime, timedelta, timezone
    except ImportError:  # no accelerator: the pure-Python classes
        from datetime import date, datetime, timedelta, timezone

__all__ = ["date", "datetime", "timedelta", "timezone"]
