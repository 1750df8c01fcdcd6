"""The conflict-resolving FIFO a queue keeps its due jobs in.

zc.queue's ``CompositeQueue`` splits a queue into buckets of about fifteen
items, so that a put (at the tail) and a claim (at the head) usually touch
different objects and concurrent puts merge.  ``FIFO`` keeps that design
and changes two things:

* ``pull`` only looks at the buckets up to the item it takes, and only
  rewrites the list of buckets when it drops an empty one, so a claim
  costs the same however many jobs wait (zc.queue checked, and rewrote,
  the whole list on every pull);
* the last bucket is never dropped, and a bucket is marked ``dropped``
  when it is.  zc.queue refuses to merge a put into a bucket that a
  concurrent claim emptied, because the claim may also have dropped the
  bucket, which would lose the put.  Here the mark tells the two cases
  apart: a dropped bucket still refuses the merge, and the kept tail
  bucket merges.  So a put no longer conflicts with the claim that empties
  a short queue, the common case when a dispatcher keeps up.

The classes must be importable on a ZEO server, like zc.queue itself, for
conflicts to resolve there.
"""
import zc.queue
import zc.queue._queue


class Bucket(zc.queue._queue.BucketQueue):
    """A bucket of the FIFO; ``dropped`` once the FIFO let it go."""

    def _p_resolveConflict(self, oldstate, committedstate, newstate):
        # A dropped bucket differs from its other versions outside of its
        # items, which zc.queue's merge refuses: only kept buckets merge,
        # emptied or not.
        return zc.queue._queue.resolveQueueConflict(
            oldstate, committedstate, newstate)


class FIFO(zc.queue.CompositeQueue):
    """A CompositeQueue whose ``pull`` costs the same at any length."""

    def __init__(self, compositeSize=15, subfactory=Bucket):
        super().__init__(compositeSize, subfactory)

    def pull(self, index=0):
        if index < 0:
            index += len(self)
            if index < 0:
                raise IndexError(index)
        seen = 0
        buckets = self._data
        for position, bucket in enumerate(buckets):
            size = len(bucket)
            if index < seen + size:
                item = bucket.pull(index - seen)
                self._drop_empty(position)
                return item
            seen += size
        raise IndexError(index)

    def _drop_empty(self, upto):
        """Drop the empty buckets among the first ``upto + 1``, but the last.
        """
        buckets = self._data
        head = buckets[:upto + 1]
        if all(head):
            return
        last = len(buckets) - 1
        kept = []
        for position, bucket in enumerate(head):
            if bucket or position == last:
                kept.append(bucket)
            else:
                bucket.dropped = True
        if len(kept) != len(head):
            self._data = tuple(kept) + buckets[upto + 1:]
