"""The conflict-resolving FIFO a queue keeps its due jobs in.

zc.queue's ``CompositeQueue`` splits a queue into buckets of about fifteen
items, so that a put and a claim usually touch different objects and
concurrent puts merge.  Its ``pull`` however checks every bucket for
emptiness and rewrites the list of buckets on every call: a claim then
costs time and storage in proportion to the number of jobs waiting.

``FIFO`` pulls the same way but only looks at the buckets up to the item it
takes, and only rewrites the list of buckets when a bucket it looked at is
empty.  The conflict resolution (and its refusal to merge a put into a
bucket that a concurrent claim emptied, which could orphan the put) is
zc.queue's, unchanged.  The class must be importable on a ZEO server, like
zc.queue itself, for conflicts to resolve there.
"""
import zc.queue


class FIFO(zc.queue.CompositeQueue):
    """A CompositeQueue whose ``pull`` costs the same at any length."""

    def pull(self, index=0):
        if index < 0:
            return super().pull(index)
        seen = 0
        for position, bucket in enumerate(self._data):
            size = len(bucket)
            if index < seen + size:
                item = bucket.pull(index - seen)
                # Weed out the empty buckets looked at (this one, or ones
                # left empty by conflict resolution merges).
                head = self._data[:position + 1]
                if not all(head):
                    self._data = (tuple(b for b in head if b)
                                  + self._data[position + 1:])
                return item
            seen += size
        raise IndexError(index)
