"""A process's share of the delivery queue: the store's writer, the intake and the workers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from sqlalchemy.engine import Engine

from gateway.config import Config
from gateway.delivery.intake import Intake
from gateway.delivery.schema import SchemaValidator
from gateway.delivery.store import DeliveryStore, worker_name
from gateway.delivery.worker import Dispatcher, StoredBody
from gateway.exchange import Pipeline, Validator
from gateway.storage.shared import SharedWriter

__all__ = ["Deliveries"]


class Deliveries:
    def __init__(self, config: Config, store: DeliveryStore, validators: Mapping[str, Validator]) -> None:
        self.config = config
        self.store = store
        self.validators = validators
        self.intake = Intake(store, config, notify=self.poke)
        self.dispatcher: Dispatcher | None = None

    @classmethod
    def build(cls, config: Config, engine: Engine, schemas_dir: Path,
              shared: SharedWriter | None = None) -> Deliveries:
        """ValueError names a JSON Schema that cannot be read or is not one. ``shared``: the
        process's one SQLite writer (gateway/storage/shared.py), which the queue's writes join."""
        validators: dict[str, Validator] = {}
        compiled: dict[str, SchemaValidator] = {}
        for service in config.services:
            name = service.schema_
            if not name or not name.endswith(".json"):
                continue
            if name not in compiled:
                try:
                    compiled[name] = SchemaValidator.load(schemas_dir / name)
                except Exception as exc:
                    raise ValueError(f"service {service.id}: schema {name}: {exc}") from exc
            validators[service.id] = compiled[name].validate
        store = DeliveryStore(engine, batch_max=config.delivery.batch_max,
                              batch_wait_ms=config.delivery.batch_wait_ms, shared=shared)
        return cls(config, store, validators)

    def attach(self, pipeline: Pipeline, queued: Iterable[str] = (),
               bodies: StoredBody | None = None) -> None:
        """The workers send through the pipeline every exchange goes through; ``queued`` names
        the sync services whose requests others store too (the flows' steps); ``bodies`` reads a
        large document's stored parts for its deliveries."""
        self.dispatcher = Dispatcher(self.store, pipeline, self.config, worker=worker_name(self.config.node),
                                     queued=queued, bodies=bodies)

    def start(self) -> None:
        """Start the writer, and the workers when this process runs them (inside the event loop)."""
        self.store.start()
        if self.dispatcher is not None and self.config.delivery.workers:
            self.dispatcher.start()

    def poke(self, service: str | None = None) -> None:
        if self.dispatcher is not None:
            self.dispatcher.poke(service)

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        self.store.close()
