import sys

from tierswitch.serve.main import main

sys.exit(main())
