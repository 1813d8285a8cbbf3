"""``python -m mllm_guidance``: the command line."""

import sys

from mllm_guidance.cli import main

sys.exit(main())
