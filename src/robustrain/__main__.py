import sys

from robustrain.cli import main

sys.exit(main())
