"""Official documents between agencies: the edXML (QCVN 102:2016) exchange through the gateway.

``catalog`` says which member receives documents for which organ, ``store`` keeps packages and their
messages, ``outbox`` hands pushed messages to the delivery queue in order, and ``desk`` is the
pipeline's step for a document service (send, status, pending, fetch, confirm). docs/documents.md.
"""
