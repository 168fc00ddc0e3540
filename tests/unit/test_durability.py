"""Durability by default: the write concern of every client, and a file-backed embedded store."""

from __future__ import annotations

from pymongo import MongoClient

from readstore.db import connect, get_database
from workers.boot import boot
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.settings import Settings


def test_every_client_the_factory_makes_writes_durably_by_default(mongo_url):
    # Given the client factory, with nothing configured
    # When it connects
    database = connect(mongo_url, "durability")

    # Then every write waits for a majority and the journal
    assert database.write_concern.document == {"w": "majority", "j": True}
    database.client.close()


def test_the_service_writes_with_the_write_concern_configured(mongo_url, monkeypatch):
    # Given a deployment that chose speed over durability, in its environment
    monkeypatch.setenv("SAGAWORKS_WRITE_CONCERN_W", "1")
    monkeypatch.setenv("SAGAWORKS_WRITE_CONCERN_JOURNAL", "false")
    settings = Settings(mongodb_url=mongo_url, _env_file=None)  # type: ignore[call-arg]

    # When a process boots from it
    boot(settings, logging=False)

    # Then its stores write with that write concern, and it says so
    assert get_database().write_concern.document == {"w": 1, "j": False}
    assert settings.describe()["write_concern"] == "w=1, j=False"


def test_a_write_acknowledged_by_a_file_backed_embedded_store_survives_sigkill(tmp_path):
    # Given a file-backed embedded store, and writes that do not ask for the journal
    server = EmbeddedMongo.start(str(tmp_path / "store"))
    client: MongoClient = MongoClient(server.url, w=1, journal=False)
    try:
        for i in range(300):
            client.db.t.insert_one({"i": i})

        # When the store is killed with SIGKILL and started again on the same path and port
        server.kill()
        server.restart()

        # Then every acknowledged write is still there: it fsyncs on every commit
        assert client.db.t.count_documents({}) == 300
        assert "--sync-on-commit" in server.command
    finally:
        client.close()
        server.stop()


def test_an_embedded_store_in_memory_is_not_asked_to_fsync():
    # Given the embedded store in memory (the demo, the tests)
    server = EmbeddedMongo.start()
    try:
        # Then it runs without the fsync option: there is no file to sync
        assert "--sync-on-commit" not in server.command
    finally:
        server.stop()
