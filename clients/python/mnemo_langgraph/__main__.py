"""`python -m mnemo_langgraph worker ...`: the `mnemo-langgraph` command."""

import sys

from .worker import cli

sys.exit(cli())
