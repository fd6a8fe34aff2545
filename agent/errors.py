"""The one base class of errors a user can cause.

Why a shared base: the command line prints any of them as one line and exits 2 ("no verdict")
without importing every module that defines one — most commands never load most modules.
"""


class UserError(ValueError):
    """A bad config, ban list or inventory file, an impossible request: one line, never a traceback."""
