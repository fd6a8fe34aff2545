"""Start appban from the folder the .msi installed it in: lib\\ beside this file holds the agent
and the Windows wheels of its dependencies, so nothing is installed into the system's Python.
(`py -3.11 -I appban.py ...`: -I keeps the user's environment and site-packages out.)"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from agent.cli import main  # noqa: E402 - after the path is set

sys.exit(main())
