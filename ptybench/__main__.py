import sys

from ptybench.cli import main

sys.exit(main())
