"""SQS's limit on batch actions, which moto enforces for SendMessageBatch only.

Amazon SQS API reference, DeleteMessageBatch and ChangeMessageVisibilityBatch
(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessageBatch.html,
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibilityBatch.html): "You
can send up to 10 … requests with each … action", and the error TooManyEntriesInBatchRequest, "The batch request
contains more entries than permissible" (HTTP 400). moto accepts any number, so code that puts back or deletes 50
messages in one call works here and fails whole in AWS, leaving every message to its visibility timeout.
"""
from moto.sqs.exceptions import TooManyEntriesInBatchRequest
from moto.sqs.models import SQSBackend

MAX_ENTRIES = 10


def _limited(moto_batch_action):
    def batch_action(self: SQSBackend, queue_name: str, entries, *args, **kwargs):
        if len(entries) > MAX_ENTRIES:
            raise TooManyEntriesInBatchRequest(len(entries))
        return moto_batch_action(self, queue_name, entries, *args, **kwargs)

    return batch_action


def install() -> None:
    SQSBackend.delete_message_batch = _limited(SQSBackend.delete_message_batch)
    SQSBackend.change_message_visibility_batch = _limited(SQSBackend.change_message_visibility_batch)
