"""``python -m mllm_guidance.cli``: the command line."""

import sys

from mllm_guidance.cli import main

sys.exit(main())
