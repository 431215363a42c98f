"""SQS rules moto lacks: at most 10 entries per batch action, and messages never lost by a concurrent receive.

Batch actions. Amazon SQS API reference, DeleteMessageBatch and ChangeMessageVisibilityBatch
(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessageBatch.html,
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibilityBatch.html): "You
can send up to 10 … requests with each … action", and the error TooManyEntriesInBatchRequest, "The batch request
contains more entries than permissible" (HTTP 400). moto accepts any number, so code that puts back or deletes 50
messages in one call works here and fails whole in AWS, leaving every message to its visibility timeout.

Concurrent receives. moto's server answers each request in its own thread and its SQS backend changes a queue's
messages without a lock: a ReceiveMessage that iterates the queue's in-flight set while another request changes it
fails with HTTP 500 ("Set changed size during iteration", seen 26 times in a 1000-device storm) after it has already
marked some messages received, so they stay in flight for the visibility timeout and nobody got them: events held
back six minutes, which SQS never does (a received message is returned to its receiver). install() serializes
moto's message operations on queues under one lock: they are in-memory and short, except a long poll, which never
holds the lock while it waits (a FIFO queue's keeps moto's own code, unlocked; a standard queue's waits on the
lock's condition, sqsstore.py).
"""
import functools
import threading

from moto.sqs.exceptions import TooManyEntriesInBatchRequest
from moto.sqs.models import SQSBackend

MAX_ENTRIES = 10

# The SQSBackend methods that change or read a queue's messages (and receive_message, see _receive).
MESSAGE_OPERATIONS = ("send_message", "send_message_batch", "delete_message", "delete_message_batch",
                      "change_message_visibility", "change_message_visibility_batch", "purge_queue")

_lock = threading.RLock()


def _limited(moto_batch_action):
    @functools.wraps(moto_batch_action)
    def batch_action(self: SQSBackend, queue_name: str, entries, *args, **kwargs):
        if len(entries) > MAX_ENTRIES:
            raise TooManyEntriesInBatchRequest(len(entries))
        return moto_batch_action(self, queue_name, entries, *args, **kwargs)

    return batch_action


def _serialized(method):
    @functools.wraps(method)
    def operation(self: SQSBackend, *args, **kwargs):
        with _lock:
            return method(self, *args, **kwargs)

    return operation


def _receive(moto_receive_message):
    locked = _serialized(moto_receive_message)

    @functools.wraps(moto_receive_message)
    def receive_message(self: SQSBackend, queue_name, count, wait_seconds_timeout, *args, **kwargs):
        if wait_seconds_timeout:
            # A long poll: moto's own, unlocked, so it never holds the lock while it waits.
            return moto_receive_message(self, queue_name, count, wait_seconds_timeout, *args, **kwargs)
        return locked(self, queue_name, count, wait_seconds_timeout, *args, **kwargs)

    return receive_message


def install() -> None:
    """Limit batch actions to 10 entries, serialize message operations and index standard queues' messages
    (sqsstore.py); call once, before the server starts."""
    for name in MESSAGE_OPERATIONS:
        setattr(SQSBackend, name, _serialized(getattr(SQSBackend, name)))
    SQSBackend.receive_message = _receive(SQSBackend.receive_message)
    SQSBackend.delete_message_batch = _limited(SQSBackend.delete_message_batch)
    SQSBackend.change_message_visibility_batch = _limited(SQSBackend.change_message_visibility_batch)
    __import__("sqsstore").install(_lock)  # every operation at the same cost at any queue depth: sqsstore.py
