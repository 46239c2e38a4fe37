"""tidings.server.media: attachment blobs — opaque ciphertext behind presigned, expiring URLs.

Guarantees: the server never sees an attachment in clear (clients encrypt with a fresh key per
file before upload, and this package imports nothing of ``tidings.crypto`` or the client); it
stores bytes exactly as uploaded, under random 192-bit ids, with exact lengths, a maximum size,
per-account quotas and garbage collection of abandoned uploads and old blobs.

Modules: :mod:`.blobstore` (the :class:`~.blobstore.BlobStore` protocol), :mod:`.local` with
:mod:`.signing` and :mod:`.handlers` (files in the data directory, HMAC-presigned URLs served by
framework-agnostic handlers), :mod:`.s3` (S3-compatible buckets), :mod:`.gc`, :mod:`.quota`,
:mod:`.settings`.
"""
