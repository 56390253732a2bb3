import sys

from stream_service.cli import main

sys.exit(main())
