"""`celery -A httpov flower` started in this folder reads this file (Flower's default `--conf`): httpov's own Flower
configuration, the one `httpov flower` uses wherever it is started (httpov/flowerconfig.py): listen on 127.0.0.1
unless told otherwise, and refuse to start without a login."""
from pathlib import Path

import httpov

exec(compile((Path(httpov.__file__).parent / "flowerconfig.py").read_text(), "httpov/flowerconfig.py", "exec"))
