"""DynamoDB's writes made atomic in moto, as DynamoDB's are.

DynamoDB applies a conditional write (PutItem, UpdateItem, DeleteItem with a ConditionExpression) atomically: of many
concurrent writes conditioned on an item's absence, exactly one succeeds (developer guide, "Condition expressions":
"conditional writes ... are atomic"). moto's server answers each request in its own thread, and its DynamoDB backend
evaluates the condition, then applies the write, without a lock: two concurrent claims of one item both read it
absent and both win (seen in a fleet storm, where two deliveries of one certificate's event both won its ledger
claim and both activated it). UpdateItem's response also reads the item before the write to answer ReturnValues.

install() serializes the item writes of moto's DynamoDB responses, whole (condition, write and the reading of the
old item for the response), item by item: a write of one item (PutItem, UpdateItem, DeleteItem) holds the lock of
its table and key's stripe (one of 64), a write of several (a batch, a transaction, a PartiQL statement) holds every
stripe, taken in order. One lock for every write was a queue in a 10 000-device storm: each write holds its lock
for the whole of moto's request handling (a few milliseconds of parsing and validation), and py-spy found 39 % of
the process waiting for it, the function's ledger writes taking most of a second. Reads stay concurrent. The
launcher calls install() once, before the server starts.

And IAM's authorization of a request on an index: a Query or Scan that names an index (IndexName) is authorized on
the index's ARN, table/<name>/index/<index>, alone (the DynamoDB developer guide's policies grant dynamodb:Query on
table/<name>/index/* for it, and on the table for queries of the table). iam.py fills every resource type AWS lists
for the action, table and index, and would ask for an Allow on both; install() keeps the index's alone.
"""
import functools
import json
import threading

from moto.dynamodb.responses import DynamoHandler

import iam

# The item writes of DynamoDB's API that moto implements, each a method of its response class: of one item, and of
# several.
ITEM_WRITES = ("put_item", "update_item", "delete_item")
WRITES = ("batch_write_item", "transact_write_items", "execute_statement", "execute_transaction",
          "batch_execute_statement")

_stripes = [threading.Lock() for _ in range(64)]


def _stripe(handler: DynamoHandler):
    """The lock of the item a PutItem, UpdateItem or DeleteItem writes (its table and key), None when unknown."""
    body = handler.body
    name, key = body.get("TableName"), body.get("Key")
    if name and key is None and isinstance(body.get("Item"), dict):
        try:
            table = handler.dynamodb_backend.get_table(name)
        except Exception:  # moto answers the missing table itself
            return None
        key = {k: body["Item"].get(k) for k in (table.hash_key_attr, table.range_key_attr) if k}
    if not name or not isinstance(key, dict):
        return None
    return _stripes[hash((name, json.dumps(key, sort_keys=True))) % len(_stripes)]


def _every_stripe(method):
    @functools.wraps(method)
    def write(self, *args, **kwargs):
        for lock in _stripes:
            lock.acquire()
        try:
            return method(self, *args, **kwargs)
        finally:
            for lock in reversed(_stripes):
                lock.release()

    return write


def _item_write(method):
    whole = _every_stripe(method)

    @functools.wraps(method)
    def write(self, *args, **kwargs):
        lock = _stripe(self)
        if lock is None:
            return whole(self, *args, **kwargs)
        with lock:
            return method(self, *args, **kwargs)

    return write


def _on_the_index(resources_for):
    @functools.wraps(resources_for)
    def resources(action, params, partition, region, account):
        arns = resources_for(action, params, partition, region, account)
        if not action.startswith("dynamodb:"):
            return arns
        indexes = [a for a in arns if "/index/" in a]
        return indexes or arns

    return resources


def install():
    """Serialize moto's DynamoDB writes item by item, and authorize index reads on the index; call once, before the server
    starts (after iam.install())."""
    for name in ITEM_WRITES:
        setattr(DynamoHandler, name, _item_write(getattr(DynamoHandler, name)))
    for name in WRITES:
        setattr(DynamoHandler, name, _every_stripe(getattr(DynamoHandler, name)))
    iam.resources_for = _on_the_index(iam.resources_for)
