import sys

from abcgen.cli import main

sys.exit(main())
