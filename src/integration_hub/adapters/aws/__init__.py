"""The AWS backend: state in DynamoDB, the queue on SQS (the ``aws`` extra).

``DynamoStore`` implements Store, Outbox and SecretStore; ``SqsQueue`` the
Queue; ``reconcile`` re-enqueues what an SQS send lost. See ADR 0011.
"""
