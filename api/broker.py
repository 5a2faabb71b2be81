"""The embedded broker: kombu's filesystem transport with messages that appear whole.

kombu's filesystem ``_put`` creates the message file under its final name and then
writes it, while ``_get`` takes any file with the queue's suffix without waiting for
the writer's lock: a consumer that looks in between reads an empty message and the
doorbell is lost (the reconciler re-rings it minutes later). With the folder polled
every 50 ms (``Settings.broker_poll_seconds``, for a job to start at once) that window
matters, so a message is written under a name ``_get`` ignores and renamed into place
(``os.replace`` is atomic within a folder). Everything else is kombu's.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

# Settings.broker_transport names Transport as Celery's `broker_transport` (it wins over
# the URL's scheme): the API publishes and the worker consumes through the same class.


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = self.data_folder_out
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # A leading dot: name.partition('.')[2] is never "<queue>.msg", so no reader takes it.
        partial = os.path.join(folder, f".{uuid.uuid4().hex}.part")
        try:
            with open(partial, "wb") as out:
                out.write(dumps(payload).encode())  # type: ignore[no-untyped-call]
            os.replace(partial, os.path.join(folder, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add a message to {folder!r}") from exc


class Transport(filesystem.Transport):
    Channel = Channel
