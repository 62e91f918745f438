import sys

from qa_worker.worker import main

sys.exit(main())
