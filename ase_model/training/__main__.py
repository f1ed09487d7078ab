"""`python -m ase_model.training` / `accelerate launch -m ase_model.training`."""

import sys

from . import main

sys.exit(main())
