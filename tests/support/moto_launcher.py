"""Start ``moto_server`` with DynamoDB item writes serialised, as DynamoDB itself serialises them.

moto's server answers each request on its own thread and checks a ConditionExpression, then writes,
without a lock; two concurrent conditional writes to one item can both pass. Real DynamoDB applies
conditional writes to an item atomically, and the entity lease relies on exactly that, so the test
server wraps moto's write handlers in one lock. Item reads take it too: moto builds an item that an
``UpdateItem`` creates attribute by attribute, so a concurrent ``GetItem`` could see it half-made (a key
and no other attribute), which real DynamoDB never returns. Everything else is moto as shipped.

Usage: python tests/support/moto_launcher.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_WRITE_LOCK = threading.Lock()


def _serialised(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _WRITE_LOCK:
            return method(self, *args, **kwargs)

    return wrapper


for _name in (
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
    "batch_write_item",
    "get_item",
    "batch_get_item",
    "transact_get_items",
):
    setattr(DynamoHandler, _name, _serialised(getattr(DynamoHandler, _name)))

if __name__ == "__main__":
    main(sys.argv[1:])
