"""DynamoDB's writes made atomic in moto, as DynamoDB's are.

DynamoDB applies a conditional write (PutItem, UpdateItem, DeleteItem with a ConditionExpression) atomically: of many
concurrent writes conditioned on an item's absence, exactly one succeeds (developer guide, "Condition expressions":
"conditional writes ... are atomic"). moto's server answers each request in its own thread, and its DynamoDB backend
evaluates the condition, then applies the write, without a lock: two concurrent claims of one item both read it
absent and both win (seen in a fleet storm, where two deliveries of one certificate's event both won its ledger
claim and both activated it). UpdateItem's response also reads the item before the write to answer ReturnValues.

install() serializes every item write of moto's DynamoDB responses, whole (condition, write and the reading of the
old item for the response), under one lock: writes in the emulator are in-memory and short, so one lock costs
nothing measurable, and a transaction or batch across tables needs no lock ordering. Reads stay concurrent. The
launcher calls install() once, before the server starts.

And IAM's authorization of a request on an index: a Query or Scan that names an index (IndexName) is authorized on
the index's ARN, table/<name>/index/<index>, alone (the DynamoDB developer guide's policies grant dynamodb:Query on
table/<name>/index/* for it, and on the table for queries of the table). iam.py fills every resource type AWS lists
for the action, table and index, and would ask for an Allow on both; install() keeps the index's alone.
"""
import functools
import threading

from moto.dynamodb.responses import DynamoHandler

import iam

# The item writes of DynamoDB's API that moto implements, each a method of its response class.
WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items",
          "execute_statement", "execute_transaction", "batch_execute_statement")

_lock = threading.Lock()


def _serialized(method):
    @functools.wraps(method)
    def write(self, *args, **kwargs):
        with _lock:
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
    """Serialize moto's DynamoDB item writes, and authorize index reads on the index; call once, before the server
    starts (after iam.install())."""
    for name in WRITES:
        setattr(DynamoHandler, name, _serialized(getattr(DynamoHandler, name)))
    iam.resources_for = _on_the_index(iam.resources_for)
