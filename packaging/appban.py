"""Start appban from the folder a Windows .msi or a macOS .pkg installed it in: lib/ beside this
file holds the agent and the wheels of its dependencies for that OS, so nothing is installed into
the system's Python. (`python3.11 -I appban.py ...`: -I keeps the user's environment and
site-packages out.)"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from agent.cli import main  # noqa: E402 - after the path is set

sys.exit(main())
