"""The write-behind: bookkeeping updates batched per collection and written in bulk."""

from __future__ import annotations

from pymongo import MongoClient, UpdateOne

from workers.write.writebehind import WriteBehind


def test_a_batch_that_fails_does_not_drop_the_other_collections_batches(mongo_url, database):
    # Given updates queued for a collection whose client has closed, and for another one
    behind = WriteBehind(interval=3600)
    gone: MongoClient = MongoClient(mongo_url)
    behind.add(gone[database.name].elsewhere, UpdateOne({"_id": 1}, {"$set": {"x": 1}}))
    gone.close()
    behind.add(database.marks, UpdateOne({"_id": 2}, {"$set": {"x": 2}}, upsert=True))

    # When the batches are written
    written = behind.flush()

    # Then the failed batch is reported and the other one is written all the same
    assert written == 1
    assert database.marks.find_one({"_id": 2}) == {"_id": 2, "x": 2}
