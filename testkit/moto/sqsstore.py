"""A standard queue's messages kept so that every message operation costs the same at any queue depth.

moto keeps a queue's messages in one list and walks it for nearly every operation: SendMessage reads the queue's
attributes (three walks, for the approximate counts), ReceiveMessage copies the visible messages into a new list,
DeleteMessage and ChangeMessageVisibility look for the receipt handle message by message and DeleteMessage rebuilds
the list. That is nothing at a depth of ten; a 10 000-device storm puts a few hundred registered events a second into
the registration queue and its depth reaches thousands, so each operation walked thousands of messages under the
lock that serializes them (sqsfidelity.py): py-spy showed moto's SQS process at two thirds of a core, 28 % of it
waiting for that lock, and the storm's rate falling from 16 connected devices a second to under 2.

Here a standard queue's messages are held in an index instead: the visible ones by send order (returned first come,
first served, as moto does, a message put back visible before the ones sent after it), the ones in flight or delayed beside them with a heap of when each becomes visible, and
every receipt handle a message has had pointing at it, and the approximate counts kept as messages move (a
SendMessage reads them: a walk over the messages in flight took a third of the process in a 10 000-device reboot,
with every retirement request waiting its turn). A receive moves messages whose time has come back to the
visible ones and takes from the front; a delete or a visibility change finds its message by the handle. What each
operation answers is moto's: the same receipt handle rules (any handle a message has had deletes it, a handle of a
deleted message is accepted again), the same dead-letter redrive (a message received maxReceiveCount times moves to
the dead-letter queue on the next receive), the same counts. A long poll waits on the lock's condition and is woken
by a send or a visibility change, so it never holds the lock while it waits. FIFO queues keep moto's own list and
code. MOTO_SQS_STORE=0 leaves every queue to moto (to compare, or to rule this out).
"""
import copy
import heapq
import itertools
import os
import threading
import time

from moto.core.utils import unix_time_millis
from moto.sqs.exceptions import InvalidParameterValue, ReceiptHandleIsInvalid
from moto.sqs.models import Message, Queue, SQSBackend, _filter_message_attributes

# The longest a message can stay invisible (SQS: 12 hours from when it was sent); moto's check, kept.
MAX_VISIBILITY_MS = 43200 * 1000


def _ready(message: Message, now: float) -> bool:
    """moto's Message.visible and not Message.delayed, at the time now."""
    return now > message.visible_at and not now < message.delayed_until


def _due(message: Message) -> float:
    return max(message.visible_at, message.delayed_until)


class Store:
    """The messages of one standard queue."""

    def __init__(self):
        # The visible messages, taken in the order they were sent (as moto's list keeps them: a message put back
        # visible comes before the ones sent after it, not behind them), from a heap of (send order, message) whose
        # stale entries are skipped.
        self.ready: dict[str, Message] = {}
        self.ready_heap: list[tuple[int, int, Message]] = []
        self.sent: dict[str, int] = {}  # message id -> send order
        self.waiting: dict[str, Message] = {}  # in flight or delayed
        self.heap: list[tuple[float, int, Message]] = []  # (when visible, tie-breaker, message); stale entries skipped
        self.handles: dict[str, Message] = {}  # every receipt handle a stored message has had
        self.order = itertools.count()
        # Why each waiting message waits, as (in flight, delayed) when it was placed, and how many of each: a
        # waiting message stays as it was placed until promote() moves it, so the counts need no walk. (A message
        # both in flight and delayed, which no receive makes, is counted delayed until both have passed.)
        self.why: dict[str, tuple[bool, bool]] = {}
        self.in_flight = 0
        self.delayed = 0

    def messages(self) -> list[Message]:
        return list(self.ready.values()) + list(self.waiting.values())

    def _unwait(self, message: Message) -> None:
        if self.waiting.pop(message.id, None) is not None:
            in_flight, delayed = self.why.pop(message.id)
            self.in_flight -= in_flight
            self.delayed -= delayed

    def place(self, message: Message, now: float) -> None:
        """Put message where it belongs at the time now; a message already visible keeps its place."""
        self._unwait(message)
        if _ready(message, now):
            self._make_ready(message)
            return
        self.ready.pop(message.id, None)
        self.waiting[message.id] = message
        why = (not now > message.visible_at, now < message.delayed_until)
        self.why[message.id] = why
        self.in_flight += why[0]
        self.delayed += why[1]
        heapq.heappush(self.heap, (_due(message), next(self.order), message))

    def _make_ready(self, message: Message) -> None:
        if message.id not in self.ready:
            self.ready[message.id] = message
            self._push_ready(message)

    def _push_ready(self, message: Message) -> None:
        heapq.heappush(self.ready_heap, (self.sent[message.id], next(self.order), message))

    def receive(self, message: Message, visibility_timeout: int, now: float) -> bool:
        """Mark message received (a new receipt handle, in flight for visibility_timeout); True when it stays
        visible (a visibility timeout of 0)."""
        message.mark_received(visibility_timeout=visibility_timeout)
        self.handles[message.receipt_handle] = message
        self.place(message, now)
        return message.id in self.ready

    def requeue(self, messages: list[Message]) -> None:
        """Put messages a receive left visible back in their send order's place for the next receive."""
        for message in messages:
            self._push_ready(message)

    def next_ready(self, taken: set[str]) -> Message | None:
        """The visible message sent first and not in taken; None when there is none."""
        while self.ready_heap:
            _, _, message = self.ready_heap[0]
            if self.ready.get(message.id) is message and message.id not in taken:
                return message
            heapq.heappop(self.ready_heap)  # received, deleted, or already looked at by this receive
        return None

    def add(self, message: Message, now: float) -> None:
        self.sent[message.id] = next(self.order)
        for handle in message.all_receipt_handles:
            if handle is not None:
                self.handles[handle] = message
        self.place(message, now)

    def drop(self, message: Message) -> None:
        self.ready.pop(message.id, None)
        self.sent.pop(message.id, None)
        self._unwait(message)
        for handle in message.all_receipt_handles:
            if handle is not None and self.handles.get(handle) is message:
                del self.handles[handle]

    def promote(self, now: float) -> None:
        """Move the messages whose visibility timeout or delay has passed to the visible ones."""
        while self.heap and self.heap[0][0] <= now:
            due, _, message = self.heap[0]
            if self.waiting.get(message.id) is not message or due != _due(message):
                heapq.heappop(self.heap)  # received again, deleted, or its visibility changed since
                continue
            if not _ready(message, now):
                return  # due exactly now: visible from the next millisecond (moto's strict comparison)
            heapq.heappop(self.heap)
            self._unwait(message)
            self._make_ready(message)

    def counts(self, now: float) -> tuple[int, int, int]:
        """(visible, in flight, delayed), as moto's approximate counts say them."""
        self.promote(now)
        return len(self.ready), self.in_flight, self.delayed


_lock = threading.RLock()  # replaced by install() with sqsfidelity's, which every message operation holds
_cond = threading.Condition(_lock)


def _store(queue: Queue) -> Store:
    store = queue.__dict__.get("_store")
    if store is None:
        store = queue.__dict__["_store"] = Store()
    return store


def _get_messages(queue: Queue) -> list[Message]:
    if queue.__dict__.get("fifo_queue"):
        return queue.__dict__["_fifo_messages"]
    return _store(queue).messages()


def _set_messages(queue: Queue, messages: list[Message]) -> None:
    # moto's __init__ sets [] before it knows the queue's type, and purge_queue sets [] again: keep both views.
    queue.__dict__["_fifo_messages"] = messages
    store = queue.__dict__["_store"] = Store()
    now = unix_time_millis()
    for message in messages:
        store.add(message, now)


def _visible(queue: Queue) -> list[Message]:
    now = unix_time_millis()
    if queue.fifo_queue:
        return [m for m in queue._messages if _ready(m, now)]
    with _lock:
        store = _store(queue)
        store.promote(now)
        return list(store.ready.values())


def _count(index: int, fifo_predicate):
    def count(queue: Queue) -> int:
        now = unix_time_millis()
        if queue.fifo_queue:
            return sum(1 for m in queue._messages if fifo_predicate(m, now))
        with _lock:
            return _store(queue).counts(now)[index]

    return property(count)


def _add_message(moto_add_message):
    def add_message(queue: Queue, message: Message) -> None:
        if queue.fifo_queue:
            return moto_add_message(queue, message)
        if queue.lambda_event_source_mappings:
            raise NotImplementedError("moto's own Lambda event source mappings are not run here; the emulator polls")
        with _cond:
            _store(queue).add(message, unix_time_millis())
            _cond.notify_all()

    return add_message


def _standard(moto_method, fast):
    """Call fast for a standard queue, moto's own (already serialized by sqsfidelity) for a FIFO queue."""

    def method(self: SQSBackend, queue_name: str, *args, **kwargs):
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            return moto_method(self, queue_name, *args, **kwargs)
        with _lock:
            return fast(self, queue, *args, **kwargs)

    method.__name__ = moto_method.__name__
    return method


def _receive(self: SQSBackend, queue: Queue, count: int, visibility_timeout: int, names: list[str]) -> list[Message]:
    store = _store(queue)
    now = unix_time_millis()
    store.promote(now)
    redrive = queue.redrive_policy if queue.dead_letter_queue is not None else None
    result: list[Message] = []
    taken: set[str] = set()  # each message visible now is looked at once at most, even one left visible
    kept: list[Message] = []  # received with visibility 0: still visible, and first again for the next receive
    while len(result) < count:
        message = store.next_ready(taken)
        if message is None:
            break
        taken.add(message.id)
        if not self.is_message_valid_based_on_retention_period(queue.name, message):
            store.drop(message)  # past the retention period: SQS deletes it
            continue
        if redrive and message.approximate_receive_count >= redrive["maxReceiveCount"]:
            store.drop(message)
            queue.dead_letter_queue.add_message(message)
            continue
        if store.receive(message, visibility_timeout, now):
            kept.append(message)
        answer = copy.copy(message)  # the answer's attributes filtered, the stored message's kept
        _filter_message_attributes(answer, names)
        result.append(answer)
    store.requeue(kept)
    return result


def _receive_message(moto_receive_message):
    def receive_message(self: SQSBackend, queue_name: str, count: int, wait_seconds_timeout: int,
                        visibility_timeout: int, message_attribute_names: list[str] | None = None) -> list[Message]:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            return moto_receive_message(self, queue_name, count, wait_seconds_timeout, visibility_timeout,
                                        message_attribute_names)
        end = time.monotonic() + (wait_seconds_timeout or 0)
        with _cond:
            while True:
                result = _receive(self, queue, count, visibility_timeout, message_attribute_names or [])
                left = end - time.monotonic()
                if result or left <= 0:
                    return result
                # Woken by a send or a visibility change; at most 100 ms, so a timeout that ends is seen soon.
                _cond.wait(min(left, 0.1))

    receive_message.__name__ = moto_receive_message.__name__
    return receive_message


def _delete(self: SQSBackend, queue: Queue, receipt_handle: str) -> None:
    if receipt_handle in queue.deleted_messages:
        return  # moto: deleting again is not an error
    store = _store(queue)
    message = store.handles.get(receipt_handle)
    if message is None:
        raise ReceiptHandleIsInvalid()
    store.drop(message)
    queue.deleted_messages.update(message.all_receipt_handles)


def _change_visibility(self: SQSBackend, queue: Queue, receipt_handle: str, visibility_timeout: int) -> None:
    store = _store(queue)
    message = store.handles.get(receipt_handle)
    if message is None:
        raise ReceiptHandleIsInvalid
    now = unix_time_millis()
    if now + int(visibility_timeout) * 1000 - message.sent_timestamp > MAX_VISIBILITY_MS:
        raise InvalidParameterValue(
            f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
            "VisibilityTimeout for the message is beyond the limit [43200 seconds]"
        )
    message.change_visibility(visibility_timeout)
    store.place(message, now)
    _cond.notify_all()


def install(lock: threading.RLock) -> None:
    """Keep standard queues' messages in a Store, under lock (sqsfidelity's); call after sqsfidelity.install()."""
    global _lock, _cond
    if os.environ.get("MOTO_SQS_STORE", "1") == "0":
        return
    _lock = lock
    _cond = threading.Condition(lock)
    Queue._messages = property(_get_messages, _set_messages)
    Queue.messages = property(_visible)
    Queue.approximate_number_of_messages = _count(0, _ready)
    Queue.approximate_number_of_messages_not_visible = _count(1, lambda m, now: not now > m.visible_at)
    Queue.approximate_number_of_messages_delayed = _count(2, lambda m, now: now < m.delayed_until)
    Queue.add_message = _add_message(Queue.add_message)
    SQSBackend.receive_message = _receive_message(SQSBackend.receive_message)
    SQSBackend.delete_message = _standard(SQSBackend.delete_message, _delete)
    SQSBackend.change_message_visibility = _standard(SQSBackend.change_message_visibility, _change_visibility)
