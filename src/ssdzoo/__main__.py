"""`python -m ssdzoo ...`, which torchrun launches: `torchrun --nproc_per_node N -m ssdzoo train ...`."""

import sys

from .cli import main

sys.exit(main())
