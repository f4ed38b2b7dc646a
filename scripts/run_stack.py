"""`make run`'s process runner: honcho over the Procfile, with a longer grace period on Ctrl-C.

honcho sends SIGTERM to every process group, then SIGKILL after a fixed 5 s. Celery's warm shutdown
(finish the running task, stop beat) and the consumers' "finish the batch, commit, leave the group"
can take longer, so the grace period is raised rather than letting SIGKILL cut them short.
"""

from __future__ import annotations

import sys

import honcho.manager
from honcho.command import main

GRACE_SECONDS = 30

if __name__ == "__main__":
    honcho.manager.KILL_WAIT = GRACE_SECONDS
    main(["start", "-f", "Procfile", *sys.argv[1:]])
