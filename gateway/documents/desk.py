"""The pipeline's ``send`` step for a document service (``documents: true``): the edXML exchange.

By the time a request gets here it has been authenticated, authorised (the policy's rule on the
document service, its scopes) and admitted like any exchange. What the desk does depends on the path
after the service's code, as the national platform's calls do (send / getPendingDocs / getDocument /
updateStatus)::

    POST   {service}                          an edXML package, or a status message  -> 202
    GET    {service}/pending[?after=&limit=]  the caller's messages not yet confirmed -> 200 JSON
    GET    {service}/messages/{id}            one message, the edXML bytes            -> 200 XML
    POST   {service}/messages/{id}/confirm    the caller got it                       -> 200 JSON

A package goes to every organ its ``To`` names: each organ's member (gateway/documents/catalog.py)
gets a copy, pushed through the delivery queue to its receiving service or kept for it to pull. A
status message goes back to the document's sender, or, sent by the sender itself (a recall), to every
recipient. Everything is refused before anything is stored: a malformed document (400 naming the
element and line), one over ``limits.max_document_bytes`` (413), an organ no member receives (422
naming it), a sender organ the caller does not act for (403). Each exchange's audit record carries the
document's id and content digests (``Result.document``).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, unquote

import structlog

from gateway.config import Config
from gateway.connector import Reply
from gateway.context import Result
from gateway.delivery.model import now_us
from gateway.documents.batching import Batcher
from gateway.documents.catalog import Directory, Receiver
from gateway.documents.outbox import Outbox
from gateway.documents.store import DocumentRow, DocumentStore, MessageRow
from gateway.edxml import EdxmlError, Limits, Package, StatusMessage, parse_message
from gateway.errors import (
    ClientError,
    Forbidden,
    GatewayError,
    InvalidBody,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    ServerError,
    UnsupportedMediaType,
)
from gateway.ids import new_id
from gateway.spool import Spooled
from gateway.storage.shared import SharedWriter

__all__ = ["DocumentDesk", "MessageNotFound"]

log = structlog.get_logger("lienthong.documents")

XML = "application/xml; charset=utf-8"
MESSAGE_HEADER = "/edXML/edXML:edXMLEnvelope/edXML:edXMLHeader/edXML:MessageHeader"
STATUS_HEADER = "/edXML/edXML:edXMLEnvelope/edXML:edXMLHeader/edXML:Status"
MAX_LIST = 500
MAX_DOCUMENT_ID = 255  # documents.document_id


class MessageNotFound(ClientError):
    status = 404
    title = "Not found"
    code = "Client.NotFound"
    type_slug = "not-found"


class DocumentDesk:
    def __init__(self, config: Config, store: DocumentStore, outbox: Outbox,
                 shared: SharedWriter | None = None) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.batcher = Batcher(store, shared=shared)
        self.directory = Directory.of(config)
        # the desk keeps each attachment's size and digest, never its bytes (the package's are stored)
        self.limits = Limits(max_bytes=config.limits.max_document_bytes, keep_attachments=False)

    async def __call__(self, ctx: Result) -> Result:
        ex = ctx.exchange
        parts = [unquote(p) for p in ex.path.strip("/").split("/")] if ex.path.strip("/") else []
        try:
            match (ex.method, parts):
                case ("POST", []):
                    return await self.send(ctx)
                case ("GET", ["pending"]):
                    return await self.pending(replace(ctx, operation="pending"))
                case ("GET", ["messages", message_id]):
                    return await self.fetch(replace(ctx, operation="get"), message_id)
                case ("POST", ["messages", message_id, "confirm"]):
                    return await self.confirm(replace(ctx, operation="confirm"), message_id)
                case (_, [] | ["pending"] | ["messages", _] | ["messages", _, "confirm"]):
                    raise MethodNotAllowed(f"{ex.method} is not taken here: POST a document or a "
                                           "status, GET pending, GET messages/{id}, POST "
                                           "messages/{id}/confirm")
                case _:
                    raise MessageNotFound(f"nothing at {ex.path} under {ex.service_id}: POST a "
                                          "document or a status, GET pending, GET messages/{id}, "
                                          "POST messages/{id}/confirm")
        except _Refused as refused:
            return replace(refused.ctx, error=refused.error)
        except GatewayError as err:
            return replace(ctx, error=err)

    # -- sending -------------------------------------------------------------------------------------

    async def send(self, ctx: Result) -> Result:
        ex = ctx.exchange
        ctx = replace(ctx, operation="send")
        media = ex.content_type.split(";", 1)[0].strip().lower()
        if media not in ("application/xml", "text/xml") and not media.endswith("+xml"):
            raise UnsupportedMediaType(f"a document service takes edXML (application/xml), not "
                                       f"{media or 'a body without Content-Type'}")
        if ex.body_size > self.limits.max_bytes:
            raise PayloadTooLarge(f"the document is larger than the {self.limits.max_bytes} bytes this "
                                  "gateway takes (limits.max_document_bytes)")
        source = ex.body if ex.spooled is None else ex.spooled.reader()  # a large one read from its file
        try:
            message = await asyncio.to_thread(parse_message, source, self.limits)
        except EdxmlError as err:
            raise _refusal(err) from None
        if isinstance(message, StatusMessage):
            return await self._status(replace(ctx, operation="status"), message)
        try:
            return await self._package(ctx, message)
        finally:
            message.close()

    async def _package(self, ctx: Result, package: Package) -> Result:
        ex, client, header = ctx.exchange, ctx.caller(), package.header
        sha256, size = ctx.request_sha256, ctx.exchange.body_size
        attachments = tuple({"contentId": a.content_id, "name": a.attachment_name, "type": a.content_type,
                             "size": a.size, "sha256": a.sha256} for a in package.attachments)
        ctx = replace(ctx, document={"id": header.document_id, "kind": "package", "sha256": sha256,
                                     "size": size, "attachments": [
                                         {"contentId": a["contentId"], "sha256": a["sha256"],
                                          "size": a["size"]} for a in attachments]})
        sender = header.from_.organ_id
        self._acts_for(ctx, client, sender, f"{MESSAGE_HEADER}/edXML:From/edXML:OrganId")
        if len(header.document_id) > MAX_DOCUMENT_ID:
            raise _Refused(ctx, InvalidBody(
                f"the DocumentId is longer than the {MAX_DOCUMENT_ID} characters this gateway keeps",
                status=422, errors=[{"path": f"{MESSAGE_HEADER}/edXML:DocumentId", "message": "too long"}]))
        organs = list(dict.fromkeys(o.organ_id for o in header.to))
        unknown = [(i, o.organ_id) for i, o in enumerate(header.to, start=1)
                   if self.directory.receiver(o.organ_id) is None]
        if unknown:
            names = ", ".join(dict.fromkeys(o for _, o in unknown))
            raise _Refused(ctx, InvalidBody(
                f"no member of this gateway receives documents for organ {names}; nothing was stored",
                status=422, errors=[{"path": f"{MESSAGE_HEADER}/edXML:To[{i}]/edXML:OrganId",
                                     "message": f"unknown recipient organ {o}"} for i, o in unknown]))
        now = now_us()
        doc = DocumentRow(id=new_id(), document_id=header.document_id, sender_organ=sender, client=client,
                          exchange_id=ex.id, sha256=sha256, size=size, body=ex.body,
                          attachments=attachments, created_us=now, spooled=ex.spooled)
        messages = [self._message(ctx, doc.id, header.document_id, "package", sender, organ, None, None,
                                  sha256, size, now,
                                  key=f"package\x00{doc.id}\x00{organ}") for organ in organs]
        try:
            stored = await self.batcher.send(doc, messages)
        except GatewayError as err:
            raise _Refused(ctx, err) from None
        # only pushed copies go on the queue; a package every recipient pulls has nothing to hand over
        queued = await self._hand_over() if any(m.service for m in stored.messages) else {}
        body = {"id": stored.document, "documentId": header.document_id, "duplicate": stored.duplicate,
                "recipients": [self._recipient(m, queued) for m in stored.messages]}
        return replace(ctx, reply=Reply(payload=body, status=202))

    async def _status(self, ctx: Result, status: StatusMessage) -> Result:
        ex, client = ctx.exchange, ctx.caller()
        answered = status.response_for
        sha256, size = ctx.request_sha256, ex.body_size
        ctx = replace(ctx, document={"id": answered.document_id, "kind": "status",
                                     "statusCode": status.status_code, "sha256": sha256,
                                     "size": size})
        sender = status.from_.organ_id
        self._acts_for(ctx, client, sender, f"{STATUS_HEADER}/edXML:From/edXML:OrganId")
        doc = await asyncio.to_thread(self.store.document, answered.organ_id, answered.document_id)
        if doc is None:
            raise _Refused(ctx, InvalidBody(
                f"no document {answered.document_id} of organ {answered.organ_id} went through this "
                "gateway; a status answers a document that did", status=422,
                errors=[{"path": f"{STATUS_HEADER}/edXML:ResponseFor/edXML:DocumentId",
                         "message": "unknown document"}]))
        recipients = await asyncio.to_thread(self.store.recipients, doc.id)
        if sender == doc.sender_organ:  # the sender's own status (a recall): to every recipient
            targets = recipients
        elif sender in recipients:
            targets = [doc.sender_organ]
        else:
            raise _Refused(ctx, Forbidden(f"organ {sender} is neither the sender nor a recipient of "
                                          f"document {answered.document_id}"))
        missing = [t for t in targets if self.directory.receiver(t) is None]
        if missing:
            raise _Refused(ctx, InvalidBody(f"no member of this gateway receives documents for organ "
                                            f"{', '.join(missing)} any more; nothing was stored",
                                            status=422))
        now = now_us()
        # A status has no attachments: the codec held it under Limits.xml (8 MiB), so its bytes may
        # be read back whole even when they came spooled.
        raw = ex.body if ex.spooled is None else await asyncio.to_thread(ex.whole_body)
        messages = [self._message(ctx, doc.id, doc.document_id, "status", sender, organ,
                                  status.status_code, raw, sha256, size, now,
                                  key=f"status\x00{doc.id}\x00{organ}\x00{sha256}") for organ in targets]
        stored = await asyncio.to_thread(self.store.add_status, messages)
        queued = await self._hand_over()
        body = {"documentId": doc.document_id, "statusCode": status.status_code,
                "duplicate": stored.duplicate,
                "recipients": [self._recipient(m, queued) for m in stored.messages]}
        return replace(ctx, reply=Reply(payload=body, status=202))

    def _acts_for(self, ctx: Result, client: str, organ: str, path: str) -> None:
        organs = self.directory.organs_of(client)
        if organ not in organs:
            acts = ", ".join(organs) if organs else "no organ"
            refused = Forbidden(f"client {client} does not send for organ {organ} (it sends for "
                                f"{acts}: members[].documents)")
            refused.extra = {"errors": [{"path": path, "message": f"organ {organ}"}]}
            raise _Refused(ctx, refused)

    def _message(self, ctx: Result, document: str, document_id: str, kind: str, sender: str, organ: str,
                 status_code: str | None, body: bytes | None, sha256: str, size: int, now: int, *,
                 key: str) -> MessageRow:
        receiver = self.directory.receiver(organ)
        assert receiver is not None
        return MessageRow(id=new_id(), idem_key=hashlib.sha256(key.encode()).hexdigest(), document=document,
                          document_id=document_id, kind=kind, from_organ=sender, to_organ=organ,
                          member=receiver.member, client=receiver.client, service=receiver.service,
                          status_code=status_code, sha256=sha256, size=size, sender_client=ctx.caller(),
                          rule=ctx.rule, exchange_id=ctx.exchange.id, created_us=now, body=body)

    async def _hand_over(self) -> dict[str, str]:
        """The pushed messages onto the delivery queue now; what fails here stays stored and the
        outbox's sweep hands it over later (the sender's answer does not wait for it)."""
        try:
            return await self.outbox.flush()
        except Exception as exc:
            log.warning("documents_hand_over_deferred", error=type(exc).__name__)
            return {}

    def _recipient(self, message: MessageRow, queued: dict[str, str]) -> dict[str, Any]:
        receiver: Receiver | None = self.directory.receiver(message.to_organ)
        out: dict[str, Any] = {"organ": message.to_organ, "member": message.member,
                               "mode": "push" if message.service else "pull", "messageId": message.id}
        if message.service is not None:
            out["service"] = message.service
            out["deliveryId"] = queued.get(message.id) or message.delivery_id
        elif receiver is not None:
            out["client"] = receiver.client
        return out

    # -- pulling -------------------------------------------------------------------------------------

    async def pending(self, ctx: Result) -> Result:
        query = parse_qs(ctx.exchange.query)
        after = _number(query, "after", 0, 2 ** 62)
        limit = _number(query, "limit", 100, MAX_LIST) or 100
        messages = await asyncio.to_thread(self.store.pending, ctx.caller(), after=after, limit=limit)
        body: dict[str, Any] = {"items": [m.view() for m in messages],
                                "next": messages[-1].seq if len(messages) == limit else None}
        return replace(ctx, reply=Reply(payload=body))

    async def fetch(self, ctx: Result, message_id: str) -> Result:
        message = await self._own(ctx, message_id)
        ctx = replace(ctx, document=_described(message))
        payload: bytes | Spooled | None = message.body
        if message.parted:  # a large package: its parts into a file, sent from there (rest.render)
            payload = await asyncio.to_thread(self.store.spool_body, message.document,
                                              self.config.state_path("spool"))
            if payload is None:
                raise ServerError(f"the stored bytes of message {message_id} are missing")
        if message.state == "pending" and message.service is None:
            await asyncio.to_thread(self.store.fetched, message.id, now_us())
        assert payload is not None
        return replace(ctx, reply=Reply(payload=payload, content_type=XML))

    async def confirm(self, ctx: Result, message_id: str) -> Result:
        message = await self._own(ctx, message_id)
        ctx = replace(ctx, document=_described(message))
        if message.service is not None:
            raise _Refused(ctx, InvalidBody(f"message {message_id} is pushed to {message.service}; its "
                                            "delivery confirms it", status=409))
        changed = await asyncio.to_thread(self.store.confirm, message.id, now_us())
        return replace(ctx, reply=Reply(payload={"id": message.id, "state": "confirmed",
                                                 "documentId": message.document_id,
                                                 "duplicate": not changed}))

    async def _own(self, ctx: Result, message_id: str) -> MessageRow:
        message = await asyncio.to_thread(self.store.message, message_id) if len(message_id) <= 32 else None
        if message is None or message.client != ctx.caller():  # another's is not there for the caller
            raise MessageNotFound(f"no message {message_id} for {ctx.caller()}")
        return message


class _Refused(Exception):
    """A refusal with what the desk learnt so far (the document's id and digests, for the record)."""

    def __init__(self, ctx: Result, error: GatewayError) -> None:
        self.ctx = ctx
        self.error = error


def _described(message: MessageRow) -> dict[str, Any]:
    out: dict[str, Any] = {"id": message.document_id, "kind": message.kind, "message": message.id,
                           "sha256": message.sha256, "size": message.size}
    if message.status_code is not None:
        out["statusCode"] = message.status_code
    return out


def _refusal(err: EdxmlError) -> GatewayError:
    errors = [{"path": path, "line": line, "message": message} for path, line, message in err.errors]
    if err.status == 413:
        return PayloadTooLarge(f"the document is refused: {err}")
    refused = InvalidBody(f"the edXML document is refused ({err.code}): {err}", status=err.status)
    refused.extra = {"errors": errors, "edxmlError": err.code}
    return refused


def _number(query: dict[str, list[str]], name: str, default: int, most: int) -> int:
    values = query.get(name)
    if not values:
        return default
    value = values[-1]
    if not value.isdigit() or int(value) > most:
        raise InvalidRequest(f"{name} must be a whole number from 0 to {most}")
    return int(value)

