"""``python -m gan_ray``: the same as the ``gan-ray`` command."""

import sys

from gan_ray.cli import main

sys.exit(main())
